"""`flask --app app ...` commands."""

import click
from flask import Flask
from flask.cli import AppGroup

from auth import register_user
from blocklist import get_blocklist
from core.errors import APIError
from core.extensions import db
from models import ApiTokenModel, SessionModel, UserModel
from schemas import UserRegisterSchema

users_cli = AppGroup("users", help="Manage user accounts.")
blocklist_cli = AppGroup("blocklist", help="Maintain the revocation store.")


@blocklist_cli.command("purge")
def purge_blocklist() -> None:
    """Delete revocation entries whose tokens have expired anyway, and the rows of
    sessions that ended by expiry and of API tokens that expired."""
    purged = get_blocklist().purge_expired()
    click.echo(f"Purged {purged} expired entries.")
    click.echo(f"Purged {SessionModel.purge_expired()} expired sessions.")
    click.echo(f"Purged {ApiTokenModel.purge_expired()} expired API tokens.")


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


def register_commands(app: Flask) -> None:
    """`flask --app app users create-admin`, `... blocklist purge`."""
    app.cli.add_command(users_cli)
    app.cli.add_command(blocklist_cli)
