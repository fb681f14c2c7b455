from tests.helpers import bearer


def test_flow(client, auth):
    uid, tokens = auth.user()
    r = client.get("/store", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200 and r.get_json() == []
