"""Ambient rows: everyday activity expanded in SQL from small templates.

Python decides how many rows each table gets per hour; DuckDB draws every row
from the templates with ``hash(seed, hour, table, row)``, so background volume
costs no Python work per row and stays a pure function of the hour bucket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from . import templates as t
from .estate import Estate, binary
from .schema import DUCKDB_TYPES, column_types


@dataclass(frozen=True)
class TableSpec:
    """How one table's background rows are drawn.

    ``share`` is the table's part of the hourly event volume; ``per_device`` and
    ``per_user`` instead give one row per device or user and hour, for state
    tables Defender refreshes periodically. ``parent`` names a table whose rows
    this one describes (an email's URLs), drawn from the parent's templates
    where ``where`` holds.
    """

    table: str
    templates: list[t.Template]
    share: float = 0.0
    per_device: bool = False
    per_user: bool = False
    parent: str = ""
    where: str = ""
    columns: dict[str, str] = field(default_factory=dict)


_GUID = (
    "lower(substr(md5(h::VARCHAR), 1, 8) || '-' || substr(md5(h::VARCHAR), 9, 4)"
    " || '-' || substr(md5(h::VARCHAR), 13, 4) || '-' || substr(md5(h::VARCHAR),"
    " 17, 4) || '-' || substr(md5(h::VARCHAR), 21, 12))"
)

SPECS: list[TableSpec] = [
    TableSpec("DeviceProcessEvents", t.PROCESS_TEMPLATES, share=0.22),
    TableSpec("DeviceNetworkEvents", t.NETWORK_TEMPLATES, share=0.22),
    TableSpec("DeviceFileEvents", t.FILE_TEMPLATES, share=0.14),
    TableSpec("DeviceRegistryEvents", t.REGISTRY_TEMPLATES, share=0.08),
    TableSpec("DeviceImageLoadEvents", t.IMAGE_LOAD_TEMPLATES, share=0.09),
    TableSpec(
        "DeviceLogonEvents",
        t.LOGON_TEMPLATES,
        share=0.05,
        columns={
            "RemoteIP": "CASE WHEN RemoteIPType = 'Private' THEN "
            "'10.20.0.' || (10 + hash(h, 7) % 60)::VARCHAR ELSE '' END",
            "AccountDomain": "'contoso'",
        },
    ),
    TableSpec("DeviceEvents", t.DEVICE_EVENT_TEMPLATES, share=0.06),
    TableSpec(
        "EmailEvents",
        t.MAIL_TEMPLATES,
        share=0.04,
        columns={
            "NetworkMessageId": _GUID,
            "InternetMessageId": "'<' || substr(md5(h::VARCHAR), 1, 20)"
            " || '@' || SenderFromDomain || '>'",
            "EmailClusterId": "(hash(h, 8) % 100000000)::BIGINT",
        },
    ),
    TableSpec(
        "EmailUrlInfo",
        t.MAIL_TEMPLATES,
        parent="EmailEvents",
        where="_url <> ''",
        columns={
            "NetworkMessageId": _GUID,
            "Url": "_url",
            "UrlDomain": "split_part(split_part(_url, '://', 2), '/', 1)",
            "UrlLocation": "CASE WHEN _url_location = '' THEN 'Body' "
            "ELSE _url_location END",
        },
    ),
    TableSpec(
        "EmailAttachmentInfo",
        t.MAIL_TEMPLATES,
        parent="EmailEvents",
        where="_attachment <> ''",
        columns={
            "NetworkMessageId": _GUID,
            "FileName": "_attachment",
            "FileType": "split_part(_attachment, '.', 2)",
            "SHA256": "sha256(_attachment)",
            "FileSize": "(20000 + hash(h, 9) % 400000)::BIGINT",
        },
    ),
    TableSpec(
        "EmailPostDeliveryEvents",
        t.POST_DELIVERY_TEMPLATES,
        share=0.003,
        columns={
            "NetworkMessageId": _GUID,
            "InternetMessageId": "'<' || substr(md5(h::VARCHAR), 1, 20)"
            " || '@fabrikam.com>'",
        },
    ),
    TableSpec(
        "IdentityLogonEvents",
        t.IDENTITY_LOGON_TEMPLATES,
        share=0.04,
        columns={
            "DestinationDeviceName": "'dc01.corp.contoso.com'",
            "DestinationIPAddress": "'10.20.0.10'",
            "DestinationPort": "'88'",
            "IPAddress": "d_LocalIP",
            "AccountDomain": "'corp.contoso.com'",
        },
    ),
    TableSpec(
        "IdentityQueryEvents",
        t.IDENTITY_QUERY_TEMPLATES,
        share=0.03,
        columns={
            "DestinationDeviceName": "'dc01.corp.contoso.com'",
            "DestinationIPAddress": "'10.20.0.10'",
            "IPAddress": "d_LocalIP",
        },
    ),
    TableSpec(
        "IdentityDirectoryEvents",
        t.IDENTITY_DIRECTORY_TEMPLATES,
        share=0.005,
        columns={"TargetAccountUpn": "u_AccountUpn"},
    ),
    TableSpec(
        "CloudAppEvents",
        t.CLOUD_APP_TEMPLATES,
        share=0.04,
        columns={"AccountId": "u_AccountObjectId"},
    ),
    TableSpec(
        "AADSignInEventsBeta",
        t.SIGN_IN_TEMPLATES,
        share=0.03,
        columns={
            "AadDeviceId": "d_AadDeviceId",
            "CorrelationId": _GUID,
            "RequestId": _GUID,
            "SessionId": _GUID,
        },
    ),
    TableSpec("UrlClickEvents", t.URL_CLICK_TEMPLATES, share=0.01),
    TableSpec(
        "DeviceFileCertificateInfo",
        t.CERTIFICATE_TEMPLATES,
        share=0.01,
        columns={
            "CertificateCreationTime": "TIMESTAMP '2024-03-01'",
            "CertificateExpirationTime": "TIMESTAMP '2026-12-01'",
        },
    ),
    TableSpec(
        "DeviceInfo",
        [{"_weight": 1}],
        per_device=True,
        columns={
            "OSPlatform": "CASE WHEN d_Role = 'workstation' THEN "
            "CASE WHEN d_OSBuild = 22631 THEN 'Windows11' ELSE "
            "'Windows10' END ELSE 'WindowsServer2022' END",
            "OSBuild": "d_OSBuild",
            "OSVersion": "'10.0'",
            "OSArchitecture": "'64-bit'",
            "PublicIP": "d_PublicIP",
            "ClientVersion": "'10.8760.27703.1006'",
            "DeviceObjectId": "d_AadDeviceId",
            "IsAzureADJoined": "d_Role = 'workstation'",
            "LoggedOnUsers": "json_array(json_object('UserName', "
            "u_AccountName, 'DomainName', 'CONTOSO', 'Sid', u_AccountSid))",
        },
    ),
    TableSpec(
        "DeviceNetworkInfo",
        [{"_weight": 1}],
        per_device=True,
        columns={
            "NetworkAdapterName": "'Ethernet'",
            "MacAddress": "upper(substr(md5(d_DeviceId), 1, 12))",
            "NetworkAdapterType": "'Ethernet'",
            "NetworkAdapterStatus": "'Up'",
            "NetworkAdapterVendor": "'Intel Corporation'",
            "ConnectedNetworks": '\'[{"Name":"corp.contoso.com",'
            '"Category":"Domain","IsConnectedToInternet":true}]\'',
            "DnsAddresses": '\'["10.20.0.10","10.20.0.11"]\'',
            "DefaultGateways": "'[\"10.20.0.1\"]'",
            "IPAddresses": '\'[{"IPAddress":"\' || d_LocalIP || '
            '\'","SubnetPrefix":16,"AddressType":"Private"}]\'',
        },
    ),
    TableSpec(
        "DeviceTvmSoftwareVulnerabilities",
        t.VULNERABILITY_TEMPLATES,
        per_device=True,
        columns={
            "OSPlatform": "'Windows11'",
            "OSVersion": "'10.0'",
            "OSArchitecture": "'x64'",
        },
    ),
    TableSpec(
        "IdentityInfo",
        [{"_weight": 1}],
        per_user=True,
        columns={
            "AccountUPN": "u_AccountUpn",
            "AccountSID": "u_AccountSid",
            "MailAddress": "u_AccountUpn",
            "GivenName": "u_GivenName",
            "Surname": "u_Surname",
            "Department": "u_Department",
            "JobTitle": "u_Title",
            "IsAccountEnabled": "true",
            "AccountDomain": "'contoso.com'",
            "UserType": "'Member'",
            "AccountTenantId": "'" + "72f988bf-86f1-41af-91ab-2d7cd011db47" + "'",
            "Country": "'DE'",
        },
    ),
]

_DEVICE_COLUMNS = {
    "DeviceId": "d_DeviceId",
    "DeviceName": "d_DeviceName",
    "MachineGroup": "d_MachineGroup",
    "LocalIP": "d_LocalIP",
}

_PROCESS_ACCOUNT_COLUMNS = {
    "AccountName": "u_AccountName",
    "AccountDomain": "u_AccountDomain",
    "AccountSid": "u_AccountSid",
    "AccountUpn": "u_AccountUpn",
    "AccountObjectId": "u_AccountObjectId",
}

# Background processes run as the user who started their parent.
_ACCOUNT_COLUMNS = {
    **_PROCESS_ACCOUNT_COLUMNS,
    **{f"InitiatingProcess{k}": v for k, v in _PROCESS_ACCOUNT_COLUMNS.items()},
    "AccountDisplayName": "u_AccountDisplayName",
    "RecipientEmailAddress": "u_AccountUpn",
    "RecipientObjectId": "u_AccountObjectId",
}

# One salt per id column, so a process and its parent get different ids.
_PROCESS_ID_SALTS = {
    "ProcessId": 13,
    "InitiatingProcessId": 14,
    "InitiatingProcessParentId": 15,
}

_ROLES = ("", "workstation", "server", "domain-controller")


def _with_binaries(template: t.Template) -> t.Template:
    """Fill folder, hashes and version information from the binary catalogue."""
    row = dict(template)
    for prefix in ("", "InitiatingProcess"):
        name = row.get(f"{prefix}FileName")
        skip_file = prefix == "" and "FolderPath" in row
        if not name or "{" in name or name == "System" or skip_file:
            continue
        found = binary(name)
        row.setdefault(f"{prefix}FolderPath", found.path)
        row.setdefault(f"{prefix}SHA1", found.sha1)
        row.setdefault(f"{prefix}SHA256", found.sha256)
        row.setdefault(f"{prefix}MD5", found.md5)
        if prefix:
            row.setdefault("InitiatingProcessFileSize", found.size)
            row.setdefault("InitiatingProcessVersionInfoCompanyName", found.company)
            row.setdefault("InitiatingProcessVersionInfoProductName", found.product)
            row.setdefault("InitiatingProcessVersionInfoOriginalFileName", found.name)
            row.setdefault("InitiatingProcessVersionInfoInternalFileName", found.name)
            row.setdefault(
                "InitiatingProcessVersionInfoFileDescription", found.description
            )
        else:
            row.setdefault("FileSize", found.size)

    return row


def _json_load(
    con: duckdb.DuckDBPyConnection,
    name: str,
    rows: list[dict[str, Any]],
    types: dict[str, str],
) -> None:
    """Create scratch table ``name`` from dictionaries, without pandas."""
    structure = json.dumps([types])
    con.execute(
        f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT unnest(from_json($1::JSON,'
        f" '{structure}'), recursive := true)",
        [json.dumps(rows)],
    )


def drop_scratch(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the scratch tables a fill leaves, so queries never see them."""
    names = con.execute(
        "SELECT table_name FROM duckdb_tables() "
        "WHERE temporary AND table_name LIKE '\\_tg\\_%' ESCAPE '\\'"
    ).fetchall()
    for (name,) in names:
        con.execute(f'DROP TABLE IF EXISTS temp."{name}"')


def load_estate(con: duckdb.DuckDBPyConnection, estate: Estate) -> None:
    """Load devices and users into temporary tables the SQL joins against."""
    devices = []
    for device in estate.devices:
        by_role = {
            "": estate.devices,
            "workstation": estate.workstations,
            "server": estate.servers,
            "domain-controller": estate.domain_controllers,
        }
        for code, role in enumerate(_ROLES):
            if device not in by_role[role]:
                continue
            devices.append(
                {
                    "d_key": code * 100_000 + by_role[role].index(device),
                    "d_DeviceId": device.device_id,
                    "d_DeviceName": device.name,
                    "d_Host": device.host,
                    "d_LocalIP": device.local_ip,
                    "d_PublicIP": device.public_ip,
                    "d_MachineGroup": device.machine_group,
                    "d_Role": device.role,
                    "d_OSBuild": device.os_build,
                    "d_AadDeviceId": device.aad_device_id,
                }
            )
    device_types = {key: "VARCHAR" for key in devices[0]}
    device_types.update(d_key="BIGINT", d_OSBuild="BIGINT")
    _json_load(con, "_tg_devices", devices, device_types)

    users = []
    for user in estate.users:
        first, _, last = user.display_name.partition(" ")
        users.append(
            {
                "u_key": user.index,
                "u_AccountName": user.name,
                "u_AccountDomain": user.domain,
                "u_AccountSid": user.sid,
                "u_AccountUpn": user.upn,
                "u_AccountObjectId": user.object_id,
                "u_AccountDisplayName": user.display_name,
                "u_GivenName": first,
                "u_Surname": last,
                "u_Department": user.department,
                "u_Title": user.title,
            }
        )
    user_types = {key: "VARCHAR" for key in users[0]}
    user_types["u_key"] = "BIGINT"
    _json_load(con, "_tg_users", users, user_types)


def _template_table(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> list[str]:
    """Load a spec's templates, one row per unit of weight; return their columns."""
    target = column_types(spec.parent or spec.table)
    rows: list[dict[str, Any]] = []
    for template in spec.templates:
        row = _with_binaries(template)
        row.setdefault("_system", False)
        row.setdefault("_device", "")
        for _ in range(int(row.get("_weight", 1))):
            rows.append(dict(row, _idx=len(rows)))
    columns = sorted({key for row in rows for key in row if key != "_weight"})
    types: dict[str, str] = {}
    for column in columns:
        if column in target:
            types[column] = DUCKDB_TYPES[target[column]]
        elif column == "_idx":
            types[column] = "BIGINT"
        elif column == "_system":
            types[column] = "BOOLEAN"
        else:
            types[column] = "VARCHAR"
    for row in rows:
        row.pop("_weight", None)
        for column in columns:
            value = row.get(column)
            if target.get(column) == "dynamic" and value is not None:
                row[column] = json.dumps(value)
            elif value is None and types[column] == "VARCHAR":
                row[column] = ""
    for column, kql_type in target.items():
        if kql_type == "dynamic" and column in types:
            types[column] = "VARCHAR"
    _json_load(con, f"_tg_t_{spec.table}", rows, types)

    return columns


def _placeholders(expression: str) -> str:
    return (
        f"replace(replace(replace({expression}, '{{user}}', u_AccountName), "
        f"'{{host}}', d_Host), '{{n}}', (1000 + hash(h, 4) % 9000)::VARCHAR)"
    )


def _column_expressions(
    spec: TableSpec, template_columns: list[str], has_placeholders: set[str]
) -> dict[str, str]:
    table_types = column_types(spec.table)
    expressions: dict[str, str] = {}
    for column, kql_type in table_types.items():
        if column in spec.columns:
            expression = spec.columns[column]
        elif column in template_columns:
            expression = f'"{column}"'
            if column in has_placeholders:
                expression = _placeholders(expression)
            if kql_type == "dynamic":
                expression = f"{expression}::JSON"
        elif column in ("Timestamp", "TimeGenerated", "ProcessCreationTime"):
            expression = "ts"
        elif column == "InitiatingProcessCreationTime":
            expression = "ts - to_seconds((1 + hash(h, 5) % 3600)::BIGINT)"
        elif column == "InitiatingProcessParentCreationTime":
            expression = "ts - to_seconds((3600 + hash(h, 6) % 86400)::BIGINT)"
        elif column in _DEVICE_COLUMNS:
            expression = _DEVICE_COLUMNS[column]
        elif column in _ACCOUNT_COLUMNS:
            expression = _ACCOUNT_COLUMNS[column]
        elif column == "ReportId":
            expression = (
                "(hash(h, 10) % 1000000)::BIGINT" if kql_type == "long" else _GUID
            )
        elif column in _PROCESS_ID_SALTS:
            salt = _PROCESS_ID_SALTS[column]
            expression = f"(100 + 4 * (hash(h, {salt}) % 16000))::BIGINT"
        elif column in ("LogonId", "InitiatingProcessLogonId"):
            expression = "(999 + hash(u_AccountSid, d_DeviceId) % 9000000)::BIGINT"
        elif column in ("SHA1", "SHA256", "MD5"):
            expression = f"{column.lower()}(h::VARCHAR)"
        elif column == "LocalPort":
            expression = "(49152 + hash(h, 11) % 16000)::INTEGER"
        else:
            continue
        expressions[column] = expression

    return expressions


def insert_background(
    con: duckdb.DuckDBPyConnection,
    estate: Estate,
    schema: str,
    buckets: list[tuple[int, int]],
    start_us: int,
    end_us: int,
) -> int:
    """Insert every table's background rows for ``buckets`` within the bounds.

    ``buckets`` holds ``(hour since epoch, events in that hour)``; the bounds are
    microseconds since the epoch, end exclusive. Returns rows inserted.
    """
    inserted = 0
    for spec in SPECS:
        inserted += _insert_spec(con, estate, schema, spec, buckets, start_us, end_us)

    return inserted


def _insert_spec(
    con: duckdb.DuckDBPyConnection,
    estate: Estate,
    schema: str,
    spec: TableSpec,
    buckets: list[tuple[int, int]],
    start_us: int,
    end_us: int,
) -> int:
    template_columns = _template_table(con, spec)
    has_placeholders = {
        column
        for template in spec.templates
        for column, value in template.items()
        if "{" in str(value)
    }
    source = spec.parent or spec.table
    share = next(s.share for s in SPECS if s.table == source)
    if spec.per_device:
        counts = [(bucket, len(estate.devices)) for bucket, _ in buckets]
    elif spec.per_user:
        counts = [(bucket, len(estate.users) - 1) for bucket, _ in buckets]
    else:
        counts = [(bucket, max(1, round(events * share))) for bucket, events in buckets]

    weight = sum(int(tpl.get("_weight", 1)) for tpl in spec.templates)
    role_sizes = {
        "workstation": len(estate.workstations),
        "server": len(estate.servers),
        "domain-controller": len(estate.domain_controllers),
    }
    device_key = (
        "i"
        if spec.per_device
        else "CASE _device "
        + " ".join(
            f"WHEN '{role}' THEN {code * 100_000} + hash(h, 2) % {role_sizes[role]}"
            for code, role in enumerate(_ROLES)
            if role
        )
        + f" ELSE hash(h, 2) % {len(estate.devices)} END"
    )
    user_key = (
        "1 + i"
        if spec.per_user
        else "CASE WHEN _system THEN 0 "
        f"ELSE 1 + hash(h, 3) % {len(estate.users) - 1} END"
    )
    expressions = _column_expressions(spec, template_columns, has_placeholders)
    select = ", ".join(
        f'{expression} AS "{column}"' for column, expression in expressions.items()
    )
    where = f"AND ({spec.where})" if spec.where else ""
    sql = f"""
        INSERT INTO "{schema}"."{spec.table}" BY NAME
        WITH spine AS (
            SELECT bucket, i, hash($seed, bucket, '{source}', i) AS h
            FROM (SELECT bucket, unnest(range(n)) AS i
                  FROM (SELECT unnest($buckets::BIGINT[]) AS bucket,
                               unnest($counts::BIGINT[]) AS n))
        ), drawn AS (
            SELECT spine.*, tpl.*,
                   make_timestamp((bucket * 3600000000
                                   + hash(h, 1) % 3600000000)::BIGINT) AS ts
            FROM spine
            JOIN "_tg_t_{spec.table}" tpl ON tpl._idx = hash(h, 12) % {weight}
        ), placed AS (
            SELECT drawn.*, {device_key} AS dkey, {user_key} AS ukey FROM drawn
        )
        SELECT {select}
        FROM placed
        JOIN _tg_devices ON d_key = dkey
        JOIN _tg_users ON u_key = ukey
        WHERE ts >= make_timestamp($start) AND ts < make_timestamp($end) {where}
    """
    result = con.execute(
        sql,
        {
            "seed": estate.seed,
            "buckets": [bucket for bucket, _ in counts],
            "counts": [n for _, n in counts],
            "start": start_us,
            "end": end_us,
        },
    ).fetchone()

    return int(result[0]) if result else 0
