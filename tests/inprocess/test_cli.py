"""`flask --app app users create-admin`."""

from core import db
from models import UserModel
from tests.helpers import bearer


def _user(app, username):
    with app.app_context():
        return UserModel.find_by_username(username)


def test_create_admin_creates_an_admin_who_can_log_in(app, auth):
    result = app.test_cli_runner().invoke(
        args=["users", "create-admin", "root", "--password", "long enough pw"]
    )
    assert result.exit_code == 0, result.output
    assert "Created administrator 'root'" in result.output
    user = _user(app, "root")
    assert user.is_admin is True
    tokens = auth.login("root", "long enough pw")
    assert tokens["token_type"] == "Bearer"


def test_create_admin_promotes_an_existing_user(app, auth, client):
    _, tokens = auth.user("bob")
    alice_id, _ = auth.user("alice")
    result = app.test_cli_runner().invoke(args=["users", "create-admin", "BOB"])
    assert result.exit_code == 0, result.output
    assert "Promoted 'bob'" in result.output
    assert "Their tokens have the rights at once" in result.output
    assert _user(app, "bob").is_admin is True
    # The token from before the promotion has the rights now.
    response = client.get(f"/user/{alice_id}", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.get_json()["username"] == "alice"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(UserModel.id))) == 2


def test_create_admin_prompts_for_the_password(app, auth):
    result = app.test_cli_runner().invoke(
        args=["users", "create-admin", "carol"],
        input="prompted password\nprompted password\n",
    )
    assert result.exit_code == 0, result.output
    assert auth.login("carol", "prompted password")["access_token"]


def test_create_admin_refuses_invalid_input(app):
    result = app.test_cli_runner().invoke(
        args=["users", "create-admin", "x", "--password", "short"]
    )
    assert result.exit_code == 1
    assert "username:" in result.output
    assert "password:" in result.output
    assert _user(app, "x") is None
