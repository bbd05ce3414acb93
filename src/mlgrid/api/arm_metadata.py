"""ARM's discovery routes, for clients that register mlgrid as a cloud (``az cloud register``).

* ``GET /metadata/endpoints`` — the cloud's endpoints document (``az cloud register
  --endpoint-resource-manager <mlgrid>`` reads it): mlgrid is both the resource manager and
  the sign-in authority; audiences are the management ones Azure clients ask tokens for.
  Public, like Azure's.
* ``GET /subscriptions`` and ``GET /subscriptions/{subscriptionId}`` — the one subscription a
  server has (its id is in every resource id), which ``az login`` lists to pick an account.
  These are Microsoft.Resources' routes, whose ``api-version`` values are not Event Grid's:
  any is accepted.
* ``GET /tenants`` — the one tenant (mlgrid accepts any tenant name in its token endpoint and
  calls its own ``mlgrid``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.arm_common import SUBSCRIPTION, arm_json, check_subscription_id
from mlgrid.api.deps import caller, runtime

router = APIRouter(tags=["ARM: discovery"])

TENANT = "mlgrid"
MANAGEMENT_AUDIENCES = ("https://management.core.windows.net/", "https://management.azure.com/")


@router.get("/metadata/endpoints", summary="ARM cloud metadata: this server as a cloud's endpoints",
            response_class=Response)
async def cloud_metadata(request: Request) -> Response:
    base = runtime(request).settings.base_url
    return arm_json({
        "name": "mlgrid",
        "resourceManager": f"{base}/",
        "authentication": {
            "loginEndpoint": base,
            "audiences": list(MANAGEMENT_AUDIENCES),
            "tenant": TENANT,
            "identityProvider": "AAD",
        },
        "suffixes": {},
    })


def _subscription(request: Request) -> dict[str, Any]:
    subscription_id = runtime(request).subscription_id
    return {
        "id": f"/subscriptions/{subscription_id}",
        "subscriptionId": subscription_id,
        "tenantId": TENANT,
        "displayName": "mlgrid",
        "state": "Enabled",
    }


@router.get("/subscriptions", summary="ARM: list subscriptions (this server's one)", response_class=Response)
async def list_subscriptions(request: Request) -> Response:
    await caller(request)
    return arm_json({"value": [_subscription(request)]})


@router.get(SUBSCRIPTION, summary="ARM: read this server's subscription", response_class=Response,
            openapi_extra={"parameters": [{"name": "subscriptionId", "in": "path", "required": True,
                                           "schema": {"type": "string"}}]})
async def get_subscription(request: Request) -> Response:
    """Microsoft.Resources' route: any ``api-version`` (its versions are not Event Grid's)."""
    await caller(request)
    check_subscription_id(request)
    return arm_json(_subscription(request))


@router.get("/tenants", summary="ARM: list tenants (mlgrid has one)", response_class=Response)
async def list_tenants(request: Request) -> Response:
    await caller(request)
    return arm_json({"value": [{"id": f"/tenants/{TENANT}", "tenantId": TENANT, "displayName": "mlgrid"}]})
