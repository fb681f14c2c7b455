"""Extension objects, created once and unbound; `create_app` binds them."""

from typing import TYPE_CHECKING

from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from core.api import EnvelopeApi
from core.errors import rate_limit_exceeded

# Deterministic constraint names keep migrations portable (SQLite batch mode).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
# The models' base class: Flask-SQLAlchemy builds db.Model at run time, from Base,
# so type checkers are shown Base itself.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
jwt = JWTManager()
api = EnvelopeApi()
cors = CORS()
# Keyed by client address (as ProxyFix resolves it) unless a limit says otherwise;
# a breach is answered in the error envelope.
limiter = Limiter(get_remote_address, on_breach=rate_limit_exceeded)
