"""The `WWW-Authenticate` challenges of the token layer's 401 answers."""


def www_authenticate(
    error: str | None = None, description: str | None = None, *, scheme: str = "Bearer"
) -> str:
    """The RFC 6750 §3 challenge, with the error when a token was refused (RFC 9449
    §7.1 words the DPoP scheme's the same way)."""
    value = f'{scheme} realm="api"'
    if error:
        # Quoted-string values may not carry quotes or backslashes (RFC 6750 §3).
        safe = (description or "").replace('"', "'").replace("\\", "/")
        value += f', error="{error}", error_description="{safe}"'
    return value


def step_up_challenge(max_age: int, description: str) -> str:
    """RFC 9470 §3: the challenge of a token whose user authentication falls short
    of the route's; `max_age` quoted as in the RFC's example."""
    return (
        www_authenticate("insufficient_user_authentication", description)
        + f', max_age="{max_age}"'
    )
