"""Hand-written SQL text of the system store's hot and batched statements.

SQLAlchemy cannot cache the compiled form of its dialect ``on_conflict`` constructs, and
compiling costs more than the commit itself on the hot path; so these statements are text, the
same on SQLite and PostgreSQL (``:name`` parameters), built once per store and shape
(``SystemStore``'s statement cache) from the functions here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Table, Text

from engine.storage.dialect import Dialect


def completion_sql(table: str, rows: str | None = None) -> str:
    """Finishing workflows: the one definition every path uses. A PENDING row takes its final
    status, output and error, frees its deduplication ID and is stamped ``:now_ms``; a row in
    any other status (cancelled meanwhile, finished already) is left as it is.

    Without ``rows``, one workflow, from the parameters ``:target_id``, ``:new_status``,
    ``:new_output`` and ``:new_error`` (executed once per workflow for several). With ``rows``,
    a FROM source named ``u`` with those columns: all of them at once, returning the IDs it
    finished.
    """
    ref = ":" if rows is None else "u."
    source = "" if rows is None else f"FROM {rows} "
    returning = "" if rows is None else ' RETURNING w."workflow_uuid"'
    return (
        f'UPDATE {table} AS w SET "status" = {ref}new_status, "output" = {ref}new_output, '
        f'"error" = {ref}new_error, "deduplication_id" = NULL, "updated_at" = :now_ms {source}'
        f"""WHERE w."workflow_uuid" = {ref}target_id AND w."status" = 'PENDING'{returning}"""
    )


#: The array parameters of a batch completion: (parameter, element type, ``completion_sql``
#: source column).
COMPLETION_ARRAYS = (
    ("ids", "text", "target_id"),
    ("statuses", "text", "new_status"),
    ("outputs", "text", "new_output"),
    ("errors", "text", "new_error"),
)

# The SQL type of array elements per column type (Dialect.array_rows).
_ARRAY_TYPES: dict[type[Any], str] = {
    Text: "text",
    String: "text",
    BigInteger: "bigint",
    Integer: "integer",
}


def insert_ignoring_sql(
    table: Table,
    table_name: str,
    columns: Sequence[str],
    conflict: Sequence[str],
    returning: str,
) -> str:
    """INSERT of one row into ``table`` (named ``table_name`` in SQL), doing nothing on a
    conflict on ``conflict``, returning ``returning`` when a row was inserted."""
    unknown = [c for c in (*columns, *conflict, returning) if c not in table.c]
    if unknown:
        raise ValueError(f"table {table.name} has no column(s) {unknown}")
    cols = ", ".join(f'"{c}"' for c in columns)
    params = ", ".join(f":{c}" for c in columns)
    target = ", ".join(f'"{c}"' for c in conflict)
    return (
        f"INSERT INTO {table_name} ({cols}) VALUES ({params}) "
        f'ON CONFLICT ({target}) DO NOTHING RETURNING "{returning}"'
    )


def record_step_sql(
    steps: Table, steps_name: str, workflows_name: str, columns: Sequence[str]
) -> str:
    """A step's INSERT ... ON CONFLICT DO NOTHING, returning the workflow's current status."""
    insert = insert_ignoring_sql(
        steps, steps_name, columns, ("workflow_uuid", "function_id"), "function_id"
    )
    status = f'(SELECT "status" FROM {workflows_name} WHERE "workflow_uuid" = :workflow_uuid)'
    return insert.replace('RETURNING "function_id"', f"RETURNING {status}")


def insert_arrays_sql(
    table: Table, table_name: str, dialect: Dialect, shapes: Sequence[tuple[str, bool]]
) -> str:
    """INSERT of many rows from array parameters ``a0``, ``a1``... (``Dialect.array_rows``),
    doing nothing for IDs that exist, returning the IDs inserted. ``shapes``: each column, and
    whether one value serves every row (a scalar parameter rather than an array)."""
    sources, arrays, names = [], [], []
    for i, (column, same) in enumerate(shapes):
        sql_type = _ARRAY_TYPES[type(table.c[column].type)]
        names.append(f'"{column}"')
        if same:
            sources.append(f"CAST(:a{i} AS {sql_type})")
        else:
            sources.append(f"u.a{i}")
            arrays.append((f"a{i}", sql_type, f"a{i}"))
    rows = dialect.array_rows("u", arrays)
    return (
        f"INSERT INTO {table_name} ({', '.join(names)}) "
        f"SELECT {', '.join(sources)} FROM {rows} "
        'ON CONFLICT ("workflow_uuid") DO NOTHING RETURNING "workflow_uuid"'
    )
