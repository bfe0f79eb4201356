"""POST /mcp: the task API as MCP tools for AI agents (stateless Streamable HTTP, JSON answers).

The caller is the token's `sub`, as on every route; each tool is a REST route's data
function (shared/tools.py), served by the MCP SDK (shared/http/mcp.py).
"""

from shared.http.app import create_app
from shared.http.deps import CallerDep
from shared.http.lambda_entry import lambda_handler
from shared.http.mcp import REQUEST_BODY, JsonRpcResponse, McpExchange, build_server, mcp_responses
from shared.http.problems import problem_responses

app = create_app("Mcp")
server = build_server()


@app.post(
    "/mcp",
    response_model=JsonRpcResponse,
    responses={**mcp_responses(), **problem_responses(401)},
    openapi_extra=REQUEST_BODY,
    operation_id="mcp",
    tags=["mcp"],
    summary="The MCP endpoint: tools/list, tools/call (add_task, list_tasks, ...)",
)
async def mcp(caller: CallerDep) -> McpExchange:  # the caller first: no token, no MCP
    return McpExchange(server)


handler = lambda_handler(app)
