// Better Auth as the Task API's issuer: email + password sign-in, RS256 JWTs (the plugin's
// default, EdDSA, is refused by API Gateway's JWT authorizer), and the OpenID discovery
// document that API Gateway (and `todo-api serve --issuer`) reads the JWKS address from.
// Users live in memory: restart it and they are gone. Configuration by environment:
//   PORT (default 3000), BETTER_AUTH_URL (default http://localhost:$PORT; the JWT's iss and aud),
//   BETTER_AUTH_SECRET (cookie signing; set your own outside a demo).
import { createServer } from "node:http";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";

const port = Number(process.env.PORT ?? 3000);
const baseURL = process.env.BETTER_AUTH_URL ?? `http://localhost:${port}`;

export const auth = betterAuth({
  baseURL,
  secret: process.env.BETTER_AUTH_SECRET ?? "a-demo-secret-that-is-at-least-32-characters",
  database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
  emailAndPassword: { enabled: true },
  telemetry: { enabled: false },
  plugins: [
    jwt({
      jwks: { keyPairConfig: { alg: "RS256", modulusLength: 2048 } },
      jwt: { issuer: baseURL, audience: baseURL, expirationTime: "15m" },
    }),
  ],
});

const handler = toNodeHandler(auth);
const discovery = JSON.stringify({
  issuer: baseURL,
  jwks_uri: `${baseURL}/api/auth/jwks`,
  id_token_signing_alg_values_supported: ["RS256"],
});

createServer((req, res) => {
  if (req.method === "GET" && req.url === "/.well-known/openid-configuration") {
    res.writeHead(200, { "content-type": "application/json" }).end(discovery);
  } else if (req.url?.startsWith("/api/auth/")) {
    handler(req, res);
  } else {
    res.writeHead(404, { "content-type": "application/json" }).end('{"message":"Not Found"}');
  }
}).listen(port, "127.0.0.1", () => console.log(`Better Auth on ${baseURL} (issuer and audience)`));
