"""The token layer's commands: `flask --app app users create-admin` (accounts),
`flask --app app keys generate` (signing keys) and `flask --app app mfa ...` (the
key that seals TOTP secrets)."""

import os
import secrets

import click
from cryptography.fernet import Fernet
from flask import Flask, current_app
from flask.cli import AppGroup

from auth.accounts import register_user
from auth.factors.totp import reseal_secrets
from auth.keys import generate_private_key, secret_key, thumbprint, write_private_key
from auth.schemas import UserRegisterSchema
from core import SIGNING_ALGORITHMS, APIError, db
from models import UserModel

users_cli = AppGroup("users", help="Manage user accounts.")
keys_cli = AppGroup("keys", help="Make token signing keys.")
mfa_cli = AppGroup("mfa", help="The key that seals TOTP secrets.")


@users_cli.command("create-admin")
@click.argument("username")
@click.option(
    "--password",
    help="The new account's password (prompted for when absent). "
    "An existing user keeps their password.",
)
def create_admin(username: str, password: str | None) -> None:
    """Create an administrator, or promote an existing user to one."""
    user = UserModel.find_by_username(username)
    if user is not None:
        user.is_admin = True
        db.session.commit()
        click.echo(
            f"Promoted {user.username!r} (id {user.id}) to administrator; "
            "password unchanged. Their tokens have the rights at once "
            "(they are read from the database at each request)."
        )
        return
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    errors = UserRegisterSchema().validate({"username": username, "password": password})
    if errors:
        for field, messages in errors.items():
            click.echo(f"{field}: {' '.join(messages)}", err=True)
        raise SystemExit(1)
    try:
        user = register_user(username, password, is_admin=True)
    except APIError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created administrator {user.username!r} (id {user.id}).")


@keys_cli.command("generate")
@click.option(
    "--alg",
    "algorithm",
    type=click.Choice(SIGNING_ALGORITHMS),
    default="EdDSA",
    show_default=True,
    help="EdDSA (Ed25519), ES256 (P-256), RS256 (RSA 3072) or HS256 (a secret).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Where to write the private key (mode 0600; never over a file). "
    "Default: jwt-<alg>-<kid>.pem in the instance folder.",
)
def generate_key(algorithm: str, out: str | None) -> None:
    """Make a new signing key and print its kid and the settings that use it."""
    if algorithm == "HS256":
        secret = secrets.token_urlsafe(48)
        click.echo(f"A new HS256 secret, kid {secret_key(secret, 'new').kid}:")
        click.echo(f"  JWT_SECRET_KEY={secret}")
        click.echo(
            "  JWT_SECRET_KEY_FALLBACKS=<the secret it replaces>  "
            "# until the tokens it signed expire"
        )
        return
    key = generate_private_key(algorithm)
    kid = thumbprint(key.public_key())
    if out is None:
        os.makedirs(current_app.instance_path, exist_ok=True)
        out = os.path.join(
            current_app.instance_path, f"jwt-{algorithm.lower()}-{kid[:12]}.pem"
        )
    try:
        write_private_key(key, out)
    except OSError as exc:
        raise click.ClickException(f"Cannot write {out}: {exc.strerror}.") from exc
    click.echo(f"Wrote a new {algorithm} private key to {out} (mode 0600), kid {kid}.")
    click.echo("To sign with it, on every instance:")
    click.echo(f"  JWT_ALGORITHM={algorithm}")
    click.echo(f"  JWT_PRIVATE_KEY_FILE={os.path.abspath(out)}")
    click.echo(
        "  JWT_PUBLIC_KEY_FALLBACK_FILES=<the key file it replaces>  "
        "# until the tokens it signed expire"
    )


@mfa_cli.command("generate-key")
def generate_mfa_key() -> None:
    """Print a new key for MFA_ENCRYPTION_KEY."""
    click.echo(f"MFA_ENCRYPTION_KEY={Fernet.generate_key().decode()}")
    click.echo(
        "MFA_ENCRYPTION_KEY_FALLBACKS=<the key it replaces>  "
        "# until `flask mfa reseal` has run"
    )


@mfa_cli.command("reseal")
def reseal() -> None:
    """Seal every TOTP secret again with MFA_ENCRYPTION_KEY (after a rotation)."""
    resealed = reseal_secrets()
    click.echo(
        f"Resealed {resealed} TOTP secret(s) with the current key; the fallbacks "
        "may now be removed."
    )


def register_auth_commands(app: Flask) -> None:
    """`flask --app app users create-admin`, `... keys generate`, `... mfa ...`."""
    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(mfa_cli)
