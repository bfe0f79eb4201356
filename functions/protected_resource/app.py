"""GET /.well-known/oauth-protected-resource: where the MCP endpoint's tokens come from (RFC 9728). No auth."""

from fastapi import Request

from shared.errors import DomainError
from shared.http.app import create_app
from shared.http.deps import api_url
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import ProtectedResourceMetadata
from shared.settings import get_settings

app = create_app("ProtectedResource")


@app.get(
    "/.well-known/oauth-protected-resource",
    response_model=ProtectedResourceMetadata,
    responses=problem_responses(),
    operation_id="protectedResourceMetadata",
    tags=["mcp"],
)
def protected_resource(request: Request) -> ProtectedResourceMetadata:
    issuer = get_settings().jwt_issuer
    if not issuer:  # the template always passes JwtIssuer: only a misconfigured run gets here (500)
        raise DomainError("The API's token issuer is not configured (JWT_ISSUER).")
    return ProtectedResourceMetadata(resource=f"{api_url(request)}/mcp", authorization_servers=[issuer])


handler = lambda_handler(app)
