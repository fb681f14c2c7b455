"""Assertion and header helpers shared by the test modules."""


def bearer(token: str) -> dict:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status: int, error: str, message: str | None = None) -> dict:
    """Assert the response is the error envelope with this status and error code."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == status
    assert body["error"] == error, body
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message
    return body
