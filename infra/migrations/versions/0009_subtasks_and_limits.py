"""Subtasks, manual order and per-user limits (docs/decisions/0010).

- `parent_id`: another task of the same owner, by the composite foreign key
  `fk_tasks_parent_owner` (owner, parent) -> tasks (owner, id), as the category's is; a purge
  of the parent sets it null (`ON DELETE SET NULL (parent_id)`: the cleanup deletes only what
  it chose, never a row by cascade). The rules a foreign key cannot hold (live parent, no
  cycle, depth <= 5 counting the top task, at most 200 live children) are checked by
  constraint triggers at the end of each writing statement, after they lock the owner's
  `users` row: two transactions that change one user's tree run one after the other, and the
  second one's checks read what the first committed (each query of a VOLATILE plpgsql
  function takes a new snapshot). The flights lock that row first themselves
  (shared/users.py), so the trigger's lock never comes after a task row lock another flight
  waits on. A broken rule raises SQLSTATE 23514 with the constraint `tasks_parent_<rule>`:
  the data layer maps the name to its 422 (shared/tasks.py, `_REFUSED`).
- `trashed_with`: the id of the task whose trashing trashed this one (itself for the task
  the user trashed): restore brings back that batch, not what was trashed before it.
- `position`: a fractional-indexing key (base 62, the `fractional-indexing` library's
  format), compared byte-wise (`COLLATE "C"`). The keys are made inside the writing
  statement by `position_between` / `position_keys_between`, a port of the library's
  algorithm, checked against the library by tests/shared/test_positions.py: a key depends on
  neighbours only the transaction can read, and a request is one flight (decision 0010).
  Existing tasks get keys in creation order (`position_of_rank`); a row inserted in SQL
  without one gets 'a0'.
- Limits: `users.tasks_held` / `categories_held`, raised by a statement-level trigger on
  each insert (successors included) while it holds the user's row; past the limit
  (`app.max_tasks` / `app.max_categories`, transaction-local, set by every flight from the
  settings) the trigger counts for real (deletes never touch the counter, so it is an upper
  bound) and refuses with the constraint `quota_tasks` / `quota_categories` (409).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# The key functions: the algorithm of `fractional-indexing` 0.1.3 (base 62), written for
# plpgsql. Every comparison is byte-wise (COLLATE "C").
_KEYS = f"""
CREATE FUNCTION position_midpoint(a text, b text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    digits constant text := '{_DIGITS}';
    prefix text := '';
    n int;
    da int;
    db int;
BEGIN
    LOOP
        IF b IS NOT NULL AND a COLLATE "C" >= b COLLATE "C" THEN
            RAISE EXCEPTION 'position_midpoint: % >= %', a, b;
        END IF;
        IF b IS NOT NULL AND b <> '' THEN
            -- drop the longest common prefix (`a` padded with zeros)
            n := 0;
            WHILE n < length(b) AND coalesce(nullif(substr(a, n + 1, 1), ''), '0') = substr(b, n + 1, 1) LOOP
                n := n + 1;
            END LOOP;
            IF n > 0 THEN
                prefix := prefix || substr(b, 1, n);
                a := substr(a, n + 1);
                b := substr(b, n + 1);
                CONTINUE;
            END IF;
        END IF;
        da := CASE WHEN a = '' THEN 0 ELSE strpos(digits, substr(a, 1, 1)) - 1 END;
        db := CASE WHEN b IS NULL THEN 62 ELSE strpos(digits, substr(b, 1, 1)) - 1 END;
        IF db - da > 1 THEN
            RETURN prefix || substr(digits, (da + db + 1) / 2 + 1, 1);  -- round half up
        ELSIF b IS NOT NULL AND length(b) > 1 THEN
            RETURN prefix || substr(b, 1, 1);
        END IF;
        prefix := prefix || substr(digits, da + 1, 1);
        a := substr(a, 2);
        b := NULL;
    END LOOP;
END
$fn$;

CREATE FUNCTION position_integer_part(key text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    head text := substr(key, 1, 1);
    size int;
BEGIN
    IF head COLLATE "C" BETWEEN 'a' AND 'z' THEN
        size := ascii(head) - ascii('a') + 2;
    ELSIF head COLLATE "C" BETWEEN 'A' AND 'Z' THEN
        size := ascii('Z') - ascii(head) + 2;
    ELSE
        RAISE EXCEPTION 'invalid position key head: %', key;
    END IF;
    IF size > length(key) THEN
        RAISE EXCEPTION 'invalid position key: %', key;
    END IF;
    RETURN substr(key, 1, size);
END
$fn$;

CREATE FUNCTION position_increment(x text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    digits constant text := '{_DIGITS}';
    head text := substr(x, 1, 1);
    digs text := substr(x, 2);
    v int;
    h text;
BEGIN
    FOR i IN REVERSE length(digs)..1 LOOP
        v := strpos(digits, substr(digs, i, 1));  -- the digit's value + 1
        IF v < 62 THEN
            RETURN head || overlay(digs PLACING substr(digits, v + 1, 1) FROM i FOR 1);
        END IF;
        digs := overlay(digs PLACING '0' FROM i FOR 1);
    END LOOP;
    IF head = 'Z' THEN
        RETURN 'a0';
    ELSIF head = 'z' THEN
        RETURN NULL;
    END IF;
    h := chr(ascii(head) + 1);
    IF h COLLATE "C" > 'a' THEN
        RETURN h || digs || '0';
    END IF;
    RETURN h || substr(digs, 1, length(digs) - 1);
END
$fn$;

CREATE FUNCTION position_decrement(x text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    digits constant text := '{_DIGITS}';
    head text := substr(x, 1, 1);
    digs text := substr(x, 2);
    v int;
    h text;
BEGIN
    FOR i IN REVERSE length(digs)..1 LOOP
        v := strpos(digits, substr(digs, i, 1)) - 1;  -- the digit's value
        IF v > 0 THEN
            RETURN head || overlay(digs PLACING substr(digits, v, 1) FROM i FOR 1);
        END IF;
        digs := overlay(digs PLACING 'z' FROM i FOR 1);
    END LOOP;
    IF head = 'a' THEN
        RETURN 'Zz';
    ELSIF head = 'A' THEN
        RETURN NULL;
    END IF;
    h := chr(ascii(head) - 1);
    IF h COLLATE "C" < 'Z' THEN
        RETURN h || digs || 'z';
    END IF;
    RETURN h || substr(digs, 1, length(digs) - 1);
END
$fn$;

-- fractional_indexing.generate_key_between(a, b): a key strictly between a and b (null:
-- no bound on that side).
CREATE FUNCTION position_between(a text, b text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    smallest constant text := 'A' || repeat('0', 26);
    ia text;
    ib text;
    i text;
BEGIN
    IF a IS NOT NULL AND b IS NOT NULL AND a COLLATE "C" >= b COLLATE "C" THEN
        RAISE EXCEPTION 'position_between: % >= %', a, b;
    END IF;
    IF a IS NULL THEN
        IF b IS NULL THEN
            RETURN 'a0';
        END IF;
        ib := public.position_integer_part(b);
        IF ib = smallest THEN
            RETURN ib || public.position_midpoint('', substr(b, length(ib) + 1));
        ELSIF ib COLLATE "C" < b COLLATE "C" THEN
            RETURN ib;
        END IF;
        i := public.position_decrement(ib);
        IF i IS NULL THEN
            RAISE EXCEPTION 'position_between: cannot decrement any more';
        END IF;
        RETURN i;
    END IF;
    ia := public.position_integer_part(a);
    IF b IS NULL THEN
        i := public.position_increment(ia);
        RETURN coalesce(i, ia || public.position_midpoint(substr(a, length(ia) + 1), NULL));
    END IF;
    ib := public.position_integer_part(b);
    IF ia = ib THEN
        RETURN ia || public.position_midpoint(substr(a, length(ia) + 1), substr(b, length(ib) + 1));
    END IF;
    i := public.position_increment(ia);
    IF i IS NULL THEN
        RAISE EXCEPTION 'position_between: cannot increment any more';
    ELSIF i COLLATE "C" < b COLLATE "C" THEN
        RETURN i;
    END IF;
    RETURN ia || public.position_midpoint(substr(a, length(ia) + 1), NULL);
END
$fn$;

-- fractional_indexing.generate_n_keys_between(a, b, n): n keys in order, evenly split.
CREATE FUNCTION position_keys_between(a text, b text, n int) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    c text;
    keys text[] := '{{}}';
    mid int;
BEGIN
    IF n <= 0 THEN
        RETURN keys;
    ELSIF n = 1 THEN
        RETURN ARRAY[public.position_between(a, b)];
    ELSIF b IS NULL THEN
        c := public.position_between(a, b);
        keys := ARRAY[c];
        FOR k IN 2..n LOOP
            c := public.position_between(c, b);
            keys := keys || c;
        END LOOP;
        RETURN keys;
    ELSIF a IS NULL THEN
        c := public.position_between(a, b);
        keys := ARRAY[c];
        FOR k IN 2..n LOOP
            c := public.position_between(a, c);
            keys := c || keys;
        END LOOP;
        RETURN keys;
    END IF;
    mid := n / 2;
    c := public.position_between(a, b);
    RETURN public.position_keys_between(a, c, mid) || c || public.position_keys_between(c, b, n - mid - 1);
END
$fn$;

-- The key of the r-th task (from 0) in a list made by adding each one last: the library's
-- a0, a1, ..., az, b00, ... (generate_n_keys_between(None, None, n)), by arithmetic.
CREATE FUNCTION position_of_rank(r bigint) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    digits constant text := '{_DIGITS}';
    size int := 1;
    span numeric := 62;
    rest numeric := r;
    key text := '';
BEGIN
    WHILE rest >= span LOOP
        rest := rest - span;
        size := size + 1;
        span := span * 62;
    END LOOP;
    FOR k IN 1..size LOOP
        key := substr(digits, (rest % 62)::int + 1, 1) || key;
        rest := trunc(rest / 62);
    END LOOP;
    RETURN chr(ascii('a') + size - 1) || key;
END
$fn$;
"""

_TREE = """
-- The last key among the live children of `parent` (top-level tasks when null).
CREATE FUNCTION last_position(owner varchar, parent uuid) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    last_key text;
BEGIN
    IF parent IS NULL THEN
        SELECT max(t.position) INTO last_key FROM public.tasks t
        WHERE t.user_id = owner AND t.parent_id IS NULL AND t.deleted_at IS NULL;
    ELSE
        SELECT max(t.position) INTO last_key FROM public.tasks t
        WHERE t.user_id = owner AND t.parent_id = parent AND t.deleted_at IS NULL;
    END IF;
    RETURN last_key;
END
$fn$;

-- Whether a live sibling under `parent` other than `task` has the key `key` (a restored
-- task keeps its old place unless someone took it meanwhile).
CREATE FUNCTION position_taken(owner varchar, parent uuid, key text, task uuid) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF parent IS NULL THEN
        RETURN EXISTS (SELECT FROM public.tasks t WHERE t.user_id = owner AND t.parent_id IS NULL AND t.deleted_at IS NULL
                       AND t.position = key AND t.id <> task);
    END IF;
    RETURN EXISTS (SELECT FROM public.tasks t WHERE t.user_id = owner AND t.parent_id = parent AND t.deleted_at IS NULL
                   AND t.position = key AND t.id <> task);
END
$fn$;

-- Which rule putting `task` (with its live descendants, and those trashed in `batch`) under
-- `parent` would break: null when none. 'missing', 'trashed', 'cycle', 'depth', 'children'.
CREATE FUNCTION tree_problem(owner varchar, task uuid, parent uuid, batch uuid) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    above int := 0;
    below int;
    here uuid := parent;
    up uuid;
    gone timestamptz;
BEGIN
    IF parent IS NULL THEN
        RETURN NULL;
    END IF;
    WHILE here IS NOT NULL LOOP
        IF here = task THEN
            RETURN 'cycle';
        END IF;
        above := above + 1;
        IF above >= 5 THEN
            RETURN 'depth';  -- the parent would be level 5 or deeper: no room for a child
        END IF;
        SELECT t.parent_id, t.deleted_at INTO up, gone FROM public.tasks t WHERE t.user_id = owner AND t.id = here;
        IF NOT FOUND THEN
            RETURN 'missing';
        ELSIF here = parent AND gone IS NOT NULL THEN
            RETURN 'trashed';
        END IF;
        here := up;
    END LOOP;
    WITH RECURSIVE sub (id, level) AS (
        SELECT t.id, 1 FROM public.tasks t
        WHERE t.user_id = owner AND t.parent_id = task AND (t.deleted_at IS NULL OR t.trashed_with = batch)
        UNION ALL
        SELECT t.id, s.level + 1 FROM public.tasks t JOIN sub s ON t.parent_id = s.id
        WHERE t.user_id = owner AND (t.deleted_at IS NULL OR t.trashed_with = batch) AND s.level < 5
    )
    SELECT coalesce(max(level), 0) INTO below FROM sub;
    IF above + 1 + below > 5 THEN
        RETURN 'depth';
    END IF;
    IF (SELECT count(*) FROM public.tasks t
        WHERE t.user_id = owner AND t.parent_id = parent AND t.deleted_at IS NULL AND t.id <> task) >= 200 THEN
        RETURN 'children';
    END IF;
    RETURN NULL;
END
$fn$;

-- Where a restored task goes: back under its parent when the parent can take it (live, room,
-- depth), else to the top level.
CREATE FUNCTION parent_on_restore(owner varchar, task uuid, parent uuid, batch uuid) RETURNS uuid
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN public.tree_problem(owner, task, parent, batch) IS NULL THEN parent END
$fn$;

CREATE FUNCTION tasks_tree_checked() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    problem text;
BEGIN
    -- The user's tree lock: concurrent changes of one user's tree run one after the other.
    PERFORM FROM public.users WHERE id = NEW.user_id FOR NO KEY UPDATE;
    IF NEW.deleted_at IS NOT NULL THEN  -- trashed: no live child may stay behind
        IF EXISTS (SELECT FROM public.tasks t WHERE t.user_id = NEW.user_id AND t.parent_id = NEW.id AND t.deleted_at IS NULL) THEN
            RAISE EXCEPTION 'task % was trashed without its subtasks', NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'tasks_parent_trashed';
        END IF;
        RETURN NULL;
    END IF;
    problem := public.tree_problem(NEW.user_id, NEW.id, NEW.parent_id, NULL);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'task % cannot be under %: %', NEW.id, NEW.parent_id, problem
            USING ERRCODE = 'check_violation', CONSTRAINT = 'tasks_parent_' || problem;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE CONSTRAINT TRIGGER tasks_tree_inserted AFTER INSERT ON tasks FOR EACH ROW
    WHEN (NEW.parent_id IS NOT NULL) EXECUTE FUNCTION tasks_tree_checked();
CREATE CONSTRAINT TRIGGER tasks_tree_moved AFTER UPDATE OF parent_id, deleted_at ON tasks FOR EACH ROW
    WHEN (NEW.parent_id IS NOT NULL AND NEW.deleted_at IS NULL
          AND (OLD.parent_id IS DISTINCT FROM NEW.parent_id OR OLD.deleted_at IS NOT NULL))
    EXECUTE FUNCTION tasks_tree_checked();
CREATE CONSTRAINT TRIGGER tasks_tree_trashed AFTER UPDATE OF deleted_at ON tasks FOR EACH ROW
    WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL) EXECUTE FUNCTION tasks_tree_checked();

-- Where a move puts the task (and, when its key would be longer than `bound`, the window
-- of up to `span` siblings on each side respaced with it): rows (task_id, key). No row:
-- `after_task` is not a live child of `new_parent` (other than the task).
CREATE FUNCTION move_plan(owner varchar, task uuid, new_parent uuid, after_task uuid, bound int, span int)
    RETURNS TABLE (task_id uuid, key text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- Each statement is planned with its parent condition as written (an index condition).
    siblings constant text := 'FROM public.tasks s WHERE s.user_id = $1 AND s.deleted_at IS NULL AND s.id <> $2 AND '
        || CASE WHEN new_parent IS NULL THEN 's.parent_id IS NULL' ELSE 's.parent_id = $3' END;
    anchor_key text;
    anchor_id uuid;
    next_key text;
    here_parent uuid;
    here_key text;
    before_id uuid;
    found_key text;
    width int;
    ids uuid[];
    keys text[];
    bounded boolean;
BEGIN
    IF after_task IS NOT NULL THEN
        EXECUTE 'SELECT s.position, s.id ' || siblings || ' AND s.id = $4'
            INTO anchor_key, anchor_id USING owner, task, new_parent, after_task;
        IF anchor_id IS NULL THEN
            RETURN;
        END IF;
    END IF;
    SELECT t.parent_id, t.position INTO here_parent, here_key FROM public.tasks t WHERE t.user_id = owner AND t.id = task;
    IF here_parent IS NOT DISTINCT FROM new_parent THEN  -- already right there: nothing moves
        EXECUTE 'SELECT s.id ' || siblings || ' AND (s.position, s.id) < ($4, $5) ORDER BY s.position DESC, s.id DESC LIMIT 1'
            INTO before_id USING owner, task, new_parent, here_key, task;
        IF before_id IS NOT DISTINCT FROM after_task THEN
            RETURN QUERY SELECT task, here_key;
            RETURN;
        END IF;
    END IF;
    IF anchor_id IS NULL THEN
        EXECUTE 'SELECT s.position ' || siblings || ' ORDER BY s.position, s.id LIMIT 1' INTO next_key USING owner, task, new_parent;
    ELSE
        EXECUTE 'SELECT s.position ' || siblings || ' AND (s.position, s.id) > ($4, $5) ORDER BY s.position, s.id LIMIT 1'
            INTO next_key USING owner, task, new_parent, anchor_key, anchor_id;
    END IF;
    IF anchor_key IS NULL OR next_key IS NULL OR anchor_key COLLATE "C" < next_key COLLATE "C" THEN
        found_key := public.position_between(anchor_key, next_key);
        IF length(found_key) <= bound THEN
            RETURN QUERY SELECT task, found_key;
            RETURN;
        END IF;
    END IF;
    -- Respace: up to `width` siblings before the new place and `width` after it, with the task
    -- between them, get keys spread evenly between the keys just outside that window; a window
    -- whose keys would still be too long (the crowd is wider) is widened, up to every sibling.
    width := span;
    LOOP
        EXECUTE
            'WITH below AS (SELECT s.id, s.position ' || siblings
            || CASE WHEN anchor_id IS NULL THEN ' AND false' ELSE ' AND (s.position, s.id) <= ($4, $5)' END
            || ' ORDER BY s.position DESC, s.id DESC LIMIT $6 + 1),'
            || ' above AS (SELECT s.id, s.position ' || siblings
            || CASE WHEN anchor_id IS NULL THEN '' ELSE ' AND (s.position, s.id) > ($4, $5)' END
            || ' ORDER BY s.position, s.id LIMIT $6 + 1),'
            || ' lower_row AS (SELECT position, id FROM below ORDER BY position, id LIMIT 1),'
            || ' upper_row AS (SELECT position, id FROM above ORDER BY position DESC, id DESC LIMIT 1),'
            || ' bounded AS (SELECT (SELECT count(*) FROM below) > $6 AS low, (SELECT count(*) FROM above) > $6 AS high),'
            || ' window_rows AS ('
            || '   SELECT id, position, 0 AS part FROM below WHERE NOT (SELECT low FROM bounded)'
            || '      OR (position, id) > (SELECT position, id FROM lower_row)'
            || '   UNION ALL SELECT $2, NULL, 1'
            || '   UNION ALL SELECT id, position, 2 FROM above WHERE NOT (SELECT high FROM bounded)'
            || '      OR (position, id) < (SELECT position, id FROM upper_row))'
            || ' SELECT array_agg(id ORDER BY part, position, id),'
            || '   public.position_keys_between('
            || '     CASE WHEN (SELECT low FROM bounded) THEN (SELECT position FROM lower_row) END,'
            || '     CASE WHEN (SELECT high FROM bounded) THEN (SELECT position FROM upper_row) END,'
            || '     count(*)::int),'
            || '   (SELECT low OR high FROM bounded)'
            || ' FROM window_rows'
            INTO ids, keys, bounded USING owner, task, new_parent, anchor_key, anchor_id, width;
        EXIT WHEN NOT bounded OR (SELECT max(length(k)) FROM unnest(keys) AS k) <= bound;
        width := width * 4;
    END LOOP;
    RETURN QUERY SELECT * FROM unnest(ids, keys);
END
$fn$;
"""

_LIMITS = """
-- Each insert raises its owners' counters while it holds their rows; past the limit it
-- counts for real (the counter is an upper bound: deletes never lower it).
CREATE FUNCTION tasks_quota_counted() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    owner varchar;
    added bigint;
    held bigint;
    most bigint := nullif(current_setting('app.max_tasks', true), '')::bigint;
BEGIN
    FOR owner, added IN SELECT n.user_id, count(*) FROM inserted n GROUP BY n.user_id LOOP
        UPDATE public.users SET tasks_held = tasks_held + added WHERE id = owner RETURNING tasks_held INTO held;
        IF most IS NOT NULL AND held > most THEN
            SELECT count(*) INTO held FROM public.tasks t WHERE t.user_id = owner;
            UPDATE public.users SET tasks_held = held WHERE id = owner;
            IF held > most THEN
                RAISE EXCEPTION 'user % would hold % tasks (at most %)', owner, held, most
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'quota_tasks';
            END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$fn$;

CREATE FUNCTION categories_quota_counted() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    owner varchar;
    added bigint;
    held bigint;
    most bigint := nullif(current_setting('app.max_categories', true), '')::bigint;
BEGIN
    FOR owner, added IN SELECT n.user_id, count(*) FROM inserted n GROUP BY n.user_id LOOP
        UPDATE public.users SET categories_held = categories_held + added WHERE id = owner RETURNING categories_held INTO held;
        IF most IS NOT NULL AND held > most THEN
            SELECT count(*) INTO held FROM public.categories c WHERE c.user_id = owner;
            UPDATE public.users SET categories_held = held WHERE id = owner;
            IF held > most THEN
                RAISE EXCEPTION 'user % would hold % categories (at most %)', owner, held, most
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'quota_categories';
            END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER tasks_quota_counted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION tasks_quota_counted();
CREATE TRIGGER categories_quota_counted AFTER INSERT ON categories
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION categories_quota_counted();
"""


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE tasks
            ADD COLUMN parent_id uuid,
            ADD COLUMN position text COLLATE "C",
            ADD COLUMN trashed_with uuid,
            ADD CONSTRAINT uq_tasks_user_id UNIQUE (user_id, id),
            ADD CONSTRAINT ck_tasks_not_own_parent CHECK (parent_id <> id);
        ALTER TABLE tasks ADD CONSTRAINT fk_tasks_parent_owner FOREIGN KEY (user_id, parent_id)
            REFERENCES tasks (user_id, id) ON DELETE SET NULL (parent_id);
        ALTER TABLE users
            ADD COLUMN tasks_held bigint NOT NULL DEFAULT 0,
            ADD COLUMN categories_held bigint NOT NULL DEFAULT 0;
        """
    )
    op.execute(_KEYS)
    # The backfill, as the tables' owner with row-level security not forced for a moment
    # (the owner has no policy; inside this transaction nobody else sees the gap).
    op.execute(
        """
        ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE users NO FORCE ROW LEVEL SECURITY;
        UPDATE tasks t SET position = position_of_rank(r.rank)
        FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY created_at, id) - 1 AS rank FROM tasks) r
        WHERE t.id = r.id;
        UPDATE users u SET tasks_held = (SELECT count(*) FROM tasks t WHERE t.user_id = u.id),
                           categories_held = (SELECT count(*) FROM categories c WHERE c.user_id = u.id);
        -- A task's answer stored for a replay (Idempotency-Key, up to IDEMPOTENCY_TTL_HOURS)
        -- shows the two new fields, as the replayed task is read with the model of now.
        ALTER TABLE idempotency_keys NO FORCE ROW LEVEL SECURITY;
        UPDATE idempotency_keys k SET response_body = (k.response_body::jsonb || jsonb_build_object(
                'parent_id', NULL,
                'position', coalesce((SELECT t.position FROM tasks t
                                      WHERE t.user_id = k.user_id AND t.id::text = k.response_body::jsonb ->> 'id'), 'a0')
            ))::text
        WHERE k.response_body LIKE '{%' AND k.response_body::jsonb ? 'title' AND NOT k.response_body::jsonb ? 'position';
        ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
        ALTER TABLE tasks FORCE ROW LEVEL SECURITY;
        ALTER TABLE users FORCE ROW LEVEL SECURITY;
        -- A row inserted outside the API (an operator's script, a bench) gets the first key; ties
        -- sort by id, and a move among tied siblings respaces them.
        ALTER TABLE tasks ALTER COLUMN position SET NOT NULL, ALTER COLUMN position SET DEFAULT 'a0';

        -- sort=position, and parent_id=<uuid>|none with it (IS NULL is an index condition too);
        -- last_position, the children count and the descendant walks.
        CREATE INDEX ix_tasks_user_position ON tasks (user_id, position, id) WHERE deleted_at IS NULL;
        CREATE INDEX ix_tasks_user_parent_position ON tasks (user_id, parent_id, position, id) WHERE deleted_at IS NULL;
        -- The foreign key's own lookups (a purge's SET NULL, restore's walk through the trash).
        CREATE INDEX ix_tasks_user_parent ON tasks (user_id, parent_id) WHERE parent_id IS NOT NULL;
        """
    )
    op.execute(_TREE)
    op.execute(_LIMITS)
    op.execute(
        """
        GRANT EXECUTE ON FUNCTION position_between(text, text), position_keys_between(text, text, int),
            last_position(varchar, uuid), position_taken(varchar, uuid, text, uuid), tree_problem(varchar, uuid, uuid, uuid),
            parent_on_restore(varchar, uuid, uuid, uuid), move_plan(varchar, uuid, uuid, uuid, int, int) TO todo_app;
        -- The quota triggers run as the writer (todo_app), on its own row only (its policy);
        -- the change log's numbers stay todo_changes' alone (0008).
        GRANT UPDATE (tasks_held, categories_held) ON users TO todo_app;
        -- The publisher reads a task as GET shows it: the two new fields too.
        GRANT SELECT (parent_id, position) ON tasks TO todo_publisher;
        ANALYZE tasks;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        REVOKE SELECT (parent_id, position) ON tasks FROM todo_publisher;
        REVOKE UPDATE (tasks_held, categories_held) ON users FROM todo_app;
        DROP TRIGGER categories_quota_counted ON categories;
        DROP TRIGGER tasks_quota_counted ON tasks;
        DROP TRIGGER tasks_tree_trashed ON tasks;
        DROP TRIGGER tasks_tree_moved ON tasks;
        DROP TRIGGER tasks_tree_inserted ON tasks;
        DROP FUNCTION categories_quota_counted(), tasks_quota_counted(), tasks_tree_checked(),
            move_plan(varchar, uuid, uuid, uuid, int, int), parent_on_restore(varchar, uuid, uuid, uuid),
            tree_problem(varchar, uuid, uuid, uuid), position_taken(varchar, uuid, text, uuid), last_position(varchar, uuid),
            position_of_rank(bigint),
            position_keys_between(text, text, int), position_between(text, text), position_decrement(text),
            position_increment(text), position_integer_part(text), position_midpoint(text, text);
        DROP INDEX ix_tasks_user_parent, ix_tasks_user_parent_position, ix_tasks_user_position;
        ALTER TABLE users DROP COLUMN categories_held, DROP COLUMN tasks_held;
        ALTER TABLE tasks DROP CONSTRAINT fk_tasks_parent_owner, DROP CONSTRAINT ck_tasks_not_own_parent,
            DROP CONSTRAINT uq_tasks_user_id, DROP COLUMN trashed_with, DROP COLUMN position, DROP COLUMN parent_id;
        """
    )
