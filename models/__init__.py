"""SQLAlchemy models, one per module; `db` lives in `core.extensions`."""

from models.api_token import ApiTokenModel
from models.blocklist_entry import BlocklistEntryModel
from models.item import ItemModel
from models.item_tag import items_tags
from models.mfa import MfaTokenModel, RecoveryCodeModel, TotpFactorModel
from models.passkey import PasskeyModel, WebAuthnChallengeModel
from models.session import SessionModel
from models.store import StoreModel
from models.tag import TagModel
from models.user import UserModel

__all__ = [
    "ApiTokenModel",
    "BlocklistEntryModel",
    "ItemModel",
    "MfaTokenModel",
    "PasskeyModel",
    "RecoveryCodeModel",
    "SessionModel",
    "StoreModel",
    "TagModel",
    "TotpFactorModel",
    "UserModel",
    "WebAuthnChallengeModel",
    "items_tags",
]
