"""A second `make run` keeps the well-known ports: connections of the stack that just stopped (TIME_WAIT) do not
count as the port being taken; a listener does."""

from __future__ import annotations

import socket

from devstack.ports import pick_port, port_is_free


def test_a_port_left_in_time_wait_is_free_and_a_listened_one_is_not() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    assert not port_is_free(port) and pick_port(port) != port  # listening: taken
    accepted.close()  # the server side closes first, as a stopping service does: its end goes to TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    assert port_is_free(port) and pick_port(port) == port
