// The Task API's main flows through a client generated from its OpenAPI document
// (`todo-api openapi` -> openapi-typescript -> src/api.d.ts) and called with openapi-fetch.
// `tsc --noEmit` holds the document to what a TypeScript consumer compiles; running it
// (API_URL, TOKEN) holds the running API to the document: any other status or shape throws.
import assert from "node:assert/strict";
import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type Task = components["schemas"]["TaskPublic"];
type Category = components["schemas"]["CategoryPublic"];

const apiUrl = process.env.API_URL ?? "http://127.0.0.1:3000";
const token = process.env.TOKEN;
if (!token) throw new Error("TOKEN is needed: e.g. TOKEN=$(.venv/bin/todo-api token --sub ts-demo)");

const api = createClient<paths>({ baseUrl: apiUrl, headers: { Authorization: `Bearer ${token}` } });
const me = { user_id: "me" };

// Every field the schema gives a task, checked at run time; adding one to the schema without
// listing it here is a compile error (the `satisfies` and the `never` below).
const TASK_FIELDS = [
  "id", "series_id", "title", "description", "completed", "completed_at", "priority", "due_at",
  "category_id", "tags", "recurrence", "timezone", "remind_at", "created_at", "updated_at", "version",
  "parent_id", "position",
] as const satisfies readonly (keyof Task)[];
const _everyField: Exclude<keyof Task, (typeof TASK_FIELDS)[number]> extends never ? true : never = true;

function checkTask(task: Task): Task {
  for (const field of TASK_FIELDS) assert.ok(field in task, `a task without ${field}: ${JSON.stringify(task)}`);
  assert.equal(typeof task.version, "number");
  return task;
}

function ok<T>(result: { data?: T; error?: unknown; response: Response }, status: number, what: string): T {
  assert.equal(result.response.status, status, `${what}: ${result.response.status} ${JSON.stringify(result.error)}`);
  assert.ok(result.data !== undefined, `${what}: no body`);
  return result.data;
}

const run = `${Date.now()}`;

// categories
const category: Category = ok(
  await api.POST("/api/{user_id}/categories", { params: { path: me }, body: { name: `Home ${run}`, color: "#336699" } }),
  201, "create category",
);
const categories = ok(await api.GET("/api/{user_id}/categories", { params: { path: me } }), 200, "list categories");
assert.ok(categories.items.some((c) => c.id === category.id));

// create
const created: Task[] = [];
for (const [title, priority] of [["Buy milk", "high"], ["Water plants", "low"], ["Pay rent", "high"]] as const) {
  const result = await api.POST("/api/{user_id}/tasks", {
    params: { path: me, header: { "idempotency-key": `create-${run}-${created.length}` } },
    body: { title: `${title} ${run}`, priority, tags: [`ts-${run}`], category_id: category.id },
  });
  created.push(checkTask(ok(result, 201, `create ${title}`)));
  assert.equal(result.response.headers.get("etag"), `"${created.at(-1)?.version}"`);
}

// list with filters, then page by cursor
const tag = `ts-${run}`;
const high = ok(await api.GET("/api/{user_id}/tasks", { params: { path: me, query: { tag, priority: "high", sort: "title" } } }), 200, "list high");
assert.deepEqual(high.items.map((t) => t.title), [`Buy milk ${run}`, `Pay rent ${run}`]);
const searched = ok(await api.GET("/api/{user_id}/tasks", { params: { path: me, query: { q: `plants ${run}`, status: "pending" } } }), 200, "search");
assert.deepEqual(searched.items.map((t) => t.id), [created[1]?.id]);
const seen: string[] = [];
let cursor: string | null = null;
do {
  const query: paths["/api/{user_id}/tasks"]["get"]["parameters"]["query"] = { tag, limit: 2, sort: "created_at", ...(cursor ? { cursor } : {}) };
  const page: components["schemas"]["TaskPage"] = ok(await api.GET("/api/{user_id}/tasks", { params: { path: me, query } }), 200, "page");
  assert.ok(page.items.length <= 2);
  seen.push(...page.items.map((t) => checkTask(t).id));
  cursor = page.next_cursor;
} while (cursor);
assert.deepEqual(seen, created.map((t) => t.id));

// PATCH with If-Match: the current version wins, a stale one is 412
const first = created[0]!;
const patched = checkTask(ok(
  await api.PATCH("/api/{user_id}/tasks/{task_id}", {
    params: { path: { ...me, task_id: first.id }, header: { "if-match": `"${first.version}"` } },
    body: { title: `Buy oat milk ${run}`, due_at: "2030-01-02T09:00:00Z" },
  }),
  200, "patch",
));
assert.equal(patched.version, first.version + 1);
const stale = await api.PATCH("/api/{user_id}/tasks/{task_id}", {
  params: { path: { ...me, task_id: first.id }, header: { "if-match": `"${first.version}"` } },
  body: { title: "lost update" },
});
assert.equal(stale.response.status, 412);

// complete
const done = checkTask(ok(
  await api.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
    params: { path: { ...me, task_id: first.id }, header: { "if-match": `"${patched.version}"` } },
    body: { completed: true },
  }),
  200, "complete",
));
assert.equal(done.completed, true);
assert.ok(done.completed_at);
const pending = ok(await api.GET("/api/{user_id}/tasks", { params: { path: me, query: { tag, status: "pending" } } }), 200, "pending");
assert.ok(!pending.items.some((t) => t.id === first.id));

// trash and restore
const second = created[1]!;
const deleted = await api.DELETE("/api/{user_id}/tasks/{task_id}", { params: { path: { ...me, task_id: second.id } } });
assert.equal(deleted.response.status, 204);
const gone = await api.GET("/api/{user_id}/tasks/{task_id}", { params: { path: { ...me, task_id: second.id } } });
assert.equal(gone.response.status, 404);
const trash = ok(await api.GET("/api/{user_id}/trash", { params: { path: me } }), 200, "trash");
const trashed = trash.items.find((t) => t.id === second.id);
assert.ok(trashed && typeof trashed.deleted_at === "string");
const restored = checkTask(ok(
  await api.POST("/api/{user_id}/trash/{task_id}/restore", { params: { path: { ...me, task_id: second.id } } }),
  200, "restore",
));
assert.equal(restored.id, second.id);

// subtasks in their own order: created last, moved first
const parent = created[2]!;
const steps: Task[] = [];
for (const title of ["pack", "book"]) {
  steps.push(checkTask(ok(await api.POST("/api/{user_id}/tasks", { params: { path: me }, body: { title, parent_id: parent.id } }), 201, title)));
}
const moved = checkTask(ok(
  await api.POST("/api/{user_id}/tasks/{task_id}/move", {
    params: { path: { ...me, task_id: steps[1]!.id }, header: { "if-match": `"${steps[1]!.version}"` } },
    body: { parent_id: parent.id, after: null },
  }),
  200, "move",
));
assert.ok(moved.position < steps[0]!.position);
const children = ok(await api.GET("/api/{user_id}/tasks", { params: { path: me, query: { parent_id: parent.id, sort: "position" } } }), 200, "subtasks");
assert.deepEqual(children.items.map((t) => t.title), ["book", "pack"]);

// the category counts its tasks; deleting it needs its current version
const counted = ok(await api.GET("/api/{user_id}/categories/{category_id}", { params: { path: { ...me, category_id: category.id } } }), 200, "category");
assert.equal(counted.task_count, 3);
const removed = await api.DELETE("/api/{user_id}/categories/{category_id}", {
  params: { path: { ...me, category_id: category.id }, header: { "if-match": `"${counted.version}"` } },
});
assert.equal(removed.response.status, 204);

console.log(`typescript client: every flow passed against ${apiUrl}`);
