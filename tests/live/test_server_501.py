"""A transfer coding gunicorn does not support is 501 Not Implemented, in the
envelope, over a real gunicorn (sync and gthread workers), raw bytes on loopback."""

from collections.abc import Iterator

import pytest

from tests.live.test_server_errors import assert_envelope, exchange, server_env
from tests.servers import live_server


@pytest.fixture(scope="module", params=[1, 2], ids=["sync", "gthread"])
def port(request, tmp_path_factory) -> Iterator[int]:
    tmp_path = tmp_path_factory.mktemp(f"threads-{request.param}")
    env = server_env(tmp_path, threads=request.param)
    with live_server(env, tmp_path / "gunicorn.log", workers=1):
        yield int(env["PORT"])


@pytest.mark.parametrize("coding", ["br", "x-custom", "chunked;q=1"])
def test_an_unsupported_transfer_coding_is_a_501_envelope(port, coding):
    answer = exchange(
        port,
        b"POST /login HTTP/1.1\r\nHost: localhost\r\n"
        + f"Transfer-Encoding: {coding}\r\n\r\n".encode(),
    )

    body = assert_envelope(answer, "HTTP/1.1 501 Not Implemented", "not_implemented")
    assert body["status"] == "Not Implemented"
    assert "Transfer-Encoding" in body["message"]
