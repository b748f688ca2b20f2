"""``GET /api/v1/briefing`` in process: a signed-in leader reads the figures; a field officer is refused."""

from __future__ import annotations

from datetime import timedelta

from dispatcher.accounts import Role
from dispatcher.settings import Settings
from server.app import create_app
from tests.conftest import START, HubRig, api_client, sign_in_as


async def test_a_leader_reads_the_figures_and_a_field_officer_is_refused(crew: HubRig) -> None:
    app = create_app(Settings(database_url=crew.url), hub=crew.hub)
    async with api_client(app) as admin:
        made = await admin.post(
            "/api/v1/incidents",
            json={
                "report_id": "b-1",
                "category": "traffic.congestion",
                "description": "五岔路口堵车",
                "location": {"lat": 28.848, "lon": 118.912},
            },
        )
        assert made.status_code == 201
    period = {"from": (START - timedelta(days=1)).isoformat(), "to": (START + timedelta(days=1)).isoformat()}

    async with api_client(app, await sign_in_as(app, Role.PARTY_SECRETARY)) as leader:
        answer = await leader.get("/api/v1/briefing", params={**period, "by": "township"})
        assert answer.status_code == 200, answer.text
        (township,) = answer.json()["units"]
        assert (township["unit"], township["received"], township["accepted"]) == ("township", 1, 1)
        by_team = await leader.get("/api/v1/briefing", params={**period, "by": "team"})
        assert by_team.status_code == 200
        assert sum(u["received"] for u in by_team.json()["units"]) == 1
        backwards = await leader.get("/api/v1/briefing", params={"from": period["to"], "to": period["from"]})
        assert backwards.status_code == 422
        unknown = await leader.get("/api/v1/briefing", params={**period, "by": "planet"})
        assert unknown.status_code == 422

    officer = await sign_in_as(app, Role.FIELD_OFFICER, officer_id="tp-01")
    async with api_client(app, officer) as field:
        refused = await field.get("/api/v1/briefing", params=period)
        assert refused.status_code == 403
