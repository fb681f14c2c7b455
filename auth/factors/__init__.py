"""The factors a user proves who they are with (no HTTP, no tokens).

- `passwords`: hashing through libpass (argon2id);
- `totp`: TOTP (RFC 6238) and recovery codes: enrolment, codes checked once;
- `encryption`: TOTP secrets sealed at rest, with keys that rotate;
- `mfa_tokens`: a login waiting for its second factor.

auth/logins.py puts them together for a login and a step-up; resources reach
them through `auth`.
"""
