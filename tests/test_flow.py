import socket

from sse.flow import set_unacknowledged_timeout


def test_unacknowledged_timeout_set_on_socket():
    with socket.socket() as sock:
        set_unacknowledged_timeout(sock, 1.5)

        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 1500


def test_unacknowledged_timeout_at_least_one_millisecond():
    with socket.socket() as sock:
        set_unacknowledged_timeout(sock, 0.0001)

        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 1
