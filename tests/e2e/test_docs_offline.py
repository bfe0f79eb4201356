"""`/docs` works offline: Swagger UI's page and every asset it references come from the
local server (the swagger-ui-py package), none from a CDN."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx


def test_docs_and_every_asset_it_references_are_served_locally(client: httpx.Client):
    page = client.get("/docs")
    assert page.status_code == 200, page.text
    html = page.text
    referenced = set(re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html))
    referenced |= set(re.findall(r"""url:\s*['"]([^'"]+)['"]""", html))  # SwaggerUIBundle({url: ...})
    assert referenced, html
    base = str(client.base_url).rstrip("/") + "/docs"
    local_host = urlsplit(base).netloc
    kinds = set()
    for reference in sorted(referenced):
        url = urljoin(base, reference)
        assert urlsplit(url).netloc == local_host, f"/docs loads {reference} from elsewhere"
        reply = client.get(url)
        assert reply.status_code == 200 and reply.content, f"{reference}: {reply.status_code}"
        kinds.add(reply.headers["content-type"].split(";")[0])
    # the bundle, its stylesheet, the icon and the document itself
    assert {"text/javascript", "text/css", "image/png", "application/json"} <= kinds, kinds
    bundle = client.get("/docs/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle and len(bundle) > 500_000  # the real bundle, not a stub
    assert client.get("/docs/../pyproject.toml").status_code == 404
    assert client.get("/docs/LICENSE").status_code == 404  # only the files the page loads
