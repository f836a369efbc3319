"""The server command: loopback addresses only, a taken port named in one line."""

import socket

import pytest
from support import invoke

from pipelines import _cli
from pipelines.serving import server
from pipelines.serving.server import PortInUseError, bind, loopback_host


def serve(argv, capsys):
    return invoke(lambda args: _cli.run(server.main, args), argv, capsys)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.8.9.10", "127.8.9.10"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("localhost", "127.0.0.1"),
        ("LOCALHOST", "127.0.0.1"),
    ],  # fmt: skip
)
def test_loopback_hosts_are_accepted(host, address):
    assert loopback_host(host) == address


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""])
def test_a_host_that_is_not_loopback_is_refused_in_one_line_with_exit_code_2(model_dir, capsys, host):
    argv = ["--model-dir", str(model_dir), "--port", "8080", "--host", host]
    code, _, err = serve(argv, capsys)
    assert code == 2
    assert err == (
        f"Error: --host {host!r} is not a loopback address: local endpoints listen on loopback only "
        "(127.0.0.0/8, ::1 or localhost) by design\n"
    )


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ("0", "--port 0 is outside 1-65535"),
        ("65536", "--port 65536 is outside 1-65535"),
        ("http", "--port 'http' is not a number"),
    ],  # fmt: skip
)
def test_a_port_outside_1_to_65535_is_refused(model_dir, capsys, port, problem):
    code, _, err = serve(["--model-dir", str(model_dir), "--port", port], capsys)
    assert (code, err) == (2, f"Error: {problem}\n")


def test_a_taken_port_is_an_error_naming_it(port):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(PortInUseError) as caught:
            bind("127.0.0.1", port)
    assert str(caught.value) == f"port {port} on 127.0.0.1 is already in use by another process"


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf"])
def test_a_header_timeout_that_is_not_a_positive_number_of_seconds_is_refused(model_dir, capsys, seconds):
    code, _, err = serve(
        ["--model-dir", str(model_dir), "--port", "8080", "--header-timeout", seconds], capsys
    )
    assert code == 2
    assert err.startswith("Error: --header-timeout ") and err.endswith(
        " must be a number of seconds above 0\n"
    )
