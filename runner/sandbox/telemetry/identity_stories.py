"""Planted identity, mail and cloud stories: logons, directory, mailbox.

Each function plants one occurrence of a story into a ``Scene``; the registry
in ``stories.py`` says what each one is and which query finds it.
"""

from __future__ import annotations

from .estate import User
from .scene import Scene


def lateral_movement(scene: Scene) -> None:
    source, user = scene.workstation(), scene.estate.users[-1]
    targets = scene.rng.sample(
        scene.estate.servers + scene.estate.domain_controllers,
        k=min(5, len(scene.estate.servers) + 2),
    )
    for offset, target in enumerate(targets):
        row = scene.initiating(
            target,
            scene.system(),
            "lsass.exe",
            "C:\\Windows\\system32\\lsass.exe",
            "wininit.exe",
            offset * 10,
        )
        row.update(
            ActionType="LogonSuccess",
            LogonType=scene.rng.choice(("Network", "RemoteInteractive")),
            Protocol="NTLM",
            AccountName=user.name,
            AccountDomain="contoso",
            AccountSid=user.sid,
            RemoteDeviceName=source.host,
            RemoteIP=source.local_ip,
            RemoteIPType="Private",
            RemotePort=scene.rng.randrange(49152, 65535),
            IsLocalAdmin=True,
            LogonId=scene.pid(),
        )
        scene.emit("DeviceLogonEvents", row)
        scene.emit(
            "IdentityLogonEvents",
            {
                "Timestamp": scene.at(offset * 10 + 1),
                "ActionType": "LogonSuccess",
                "Application": "Active Directory",
                "LogonType": "Resource access",
                "Protocol": "Ntlm",
                "AccountName": user.name,
                "AccountDomain": "corp.contoso.com",
                "AccountUpn": user.upn,
                "AccountSid": user.sid,
                "AccountObjectId": user.object_id,
                "AccountDisplayName": user.display_name,
                "DeviceName": source.name,
                "IPAddress": source.local_ip,
                "DestinationDeviceName": target.name,
                "DestinationIPAddress": target.local_ip,
                "DestinationPort": "445",
                "TargetDeviceName": target.name,
                "ReportId": scene.guid(),
            },
        )


def inbox_rule(scene: Scene) -> None:
    user = scene.person()
    forward = (
        f"{scene.rng.choice(('archive', 'backup', 'mx'))}{scene.rng.randrange(99)}"
    )
    parameters = [
        {"Name": "Name", "Value": scene.rng.choice((".", "..", "RSS Feeds"))},
        {"Name": "ForwardTo", "Value": f"{forward}@protonmail.com"},
        {"Name": "DeleteMessage", "Value": "True"},
        {"Name": "SubjectOrBodyContainsWords", "Value": "invoice;payment;password"},
    ]
    scene.emit(
        "CloudAppEvents",
        {
            "Timestamp": scene.at(0),
            "ActionType": "New-InboxRule",
            "Application": "Microsoft Exchange Online",
            "ApplicationId": 20893,
            "ActivityType": "Create",
            "AccountObjectId": user.object_id,
            "AccountId": user.object_id,
            "AccountDisplayName": user.display_name,
            "IPAddress": f"185.225.69.{scene.rng.randrange(2, 250)}",
            "CountryCode": "NL",
            "ISP": "Anonymous VPN",
            "IsAnonymousProxy": True,
            "ObjectType": "Inbox rule",
            "ObjectName": parameters[0]["Value"],
            "ReportId": scene.guid(),
            "RawEventData": {
                "Operation": "New-InboxRule",
                "UserId": user.upn,
                "Parameters": parameters,
                "ResultStatus": "True",
            },
            "ActivityObjects": [{"Type": "Inbox rule", "Name": parameters[0]["Value"]}],
        },
    )


def _inbound_mail(
    scene: Scene,
    user: User,
    message: str,
    sender: tuple[str, str, str],
    **fields: object,
) -> None:
    """One inbound message to *user* from *sender*; *fields* give the verdict.

    *sender* is the display name, the From address and the envelope (mail
    from) address; the domains follow from the addresses.
    """
    display, address, envelope = sender
    row: dict[str, object] = {
        "Timestamp": scene.at(0),
        "SenderDisplayName": display,
        "SenderFromAddress": address,
        "SenderFromDomain": address.split("@")[1],
        "SenderMailFromAddress": envelope,
        "SenderMailFromDomain": envelope.split("@")[1],
        "NetworkMessageId": message,
        "InternetMessageId": f"<{scene.hexdigits(20)}@mail-relay.example.net>",
        "RecipientEmailAddress": user.upn,
        "RecipientObjectId": user.object_id,
        "EmailDirection": "Inbound",
        "DeliveryAction": "Delivered",
        "DeliveryLocation": "Inbox/folder",
        "LatestDeliveryAction": "Delivered",
        "LatestDeliveryLocation": "Inbox/folder",
        "UrlCount": 0,
        "AttachmentCount": 0,
        "EmailLanguage": "en",
        "ReportId": scene.guid(),
    }
    row.update(fields)
    scene.emit("EmailEvents", row)


def _mail_url(scene: Scene, message: str, url: str, location: str) -> None:
    scene.emit(
        "EmailUrlInfo",
        {
            "Timestamp": scene.at(0),
            "NetworkMessageId": message,
            "Url": url,
            "UrlDomain": url.split("/")[2],
            "UrlLocation": location,
            "ReportId": scene.guid(),
        },
    )


def phishing_click(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    message = scene.guid()
    url = (
        f"https://login-micros0ft-{scene.rng.randrange(100, 999)}.com/"
        "owa/auth/logon.aspx"
    )
    domain = url.split("/")[2]
    _inbound_mail(
        scene,
        user,
        message,
        (
            "Microsoft 365 Security",
            "security@micros0ft-support.com",
            "bounce@mail-relay.example.net",
        ),
        SenderIPv4=f"193.29.13.{scene.rng.randrange(2, 250)}",
        Subject="Unusual sign-in activity - verify your account",
        ThreatTypes="Phish",
        DetectionMethods='{"Phish":["URL detonation reputation"]}',
        ConfidenceLevel='{"Phish":"Low"}',
        UrlCount=1,
        AuthenticationDetails='{"SPF":"fail","DKIM":"none","DMARC":"fail",'
        '"CompAuth":"fail"}',
    )
    _mail_url(scene, message, url, "Body")
    scene.emit(
        "UrlClickEvents",
        {
            "Timestamp": scene.at(60),
            "Url": url,
            "ActionType": "ClickAllowed",
            "AccountUpn": user.upn,
            "Workload": "Email",
            "NetworkMessageId": message,
            "ThreatTypes": "Phish",
            "DetectionMethods": "URL detonation reputation",
            "IsClickedThrough": True,
            "IPAddress": device.public_ip,
            "UrlChain": f'["{url}"]',
            "ReportId": scene.guid(),
        },
    )
    net = scene.initiating(
        device, user, "msedge.exe", '"msedge.exe" ' + url, "OUTLOOK.EXE", 61
    )
    net.update(
        ActionType="ConnectionSuccess",
        RemoteUrl=domain,
        RemoteIP=f"193.29.13.{scene.rng.randrange(2, 250)}",
        RemotePort=443,
        RemoteIPType="Public",
        LocalIP=device.local_ip,
        Protocol="Tcp",
    )
    scene.emit("DeviceNetworkEvents", net)
    scene.alert(
        "A potentially malicious URL click was detected",
        severity="High",
        category="InitialAccess",
        techniques=["T1566.002"],
        seconds=90,
        evidence=[
            {
                "EntityType": "Url",
                "EvidenceRole": "Impacted",
                "RemoteUrl": url,
                "AccountUpn": user.upn,
            },
            {
                "EntityType": "MailMessage",
                "EvidenceRole": "Related",
                "NetworkMessageId": message,
                "EmailSubject": "Unusual sign-in activity",
            },
        ],
    )


def sam_name_spoofing(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    dc = scene.estate.domain_controllers[0]
    machine = f"{device.host.upper()[:15]}$"
    target = dc.host.upper()
    scene.emit(
        "IdentityDirectoryEvents",
        {
            "Timestamp": scene.at(0),
            "ActionType": "SAM Account Name changed",
            "Application": "Active Directory",
            "Protocol": "Ldap",
            "AccountName": user.name,
            "AccountDomain": "corp.contoso.com",
            "AccountUpn": user.upn,
            "AccountSid": user.sid,
            "AccountObjectId": user.object_id,
            "AccountDisplayName": user.display_name,
            "DeviceName": device.name,
            "IPAddress": device.local_ip,
            "DestinationDeviceName": dc.name,
            "TargetDeviceName": device.name,
            "ReportId": scene.guid(),
            "AdditionalFields": {
                "FROM SAM Account Name": machine,
                "TO SAM Account Name": target,
                "TARGET_OBJECT.DEVICE": device.host,
            },
        },
    )


def ldap_recon(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    dc = scene.rng.choice(scene.estate.domain_controllers)
    for offset, (query, target) in enumerate(
        (
            (
                "(&(objectCategory=person)(objectClass=user)(servicePrincipalName=*))",
                "AllUsersWithSPN",
            ),
            ("(&(objectClass=group)(cn=Domain Admins))", "Domain Admins"),
        )
    ):
        scene.emit(
            "IdentityQueryEvents",
            {
                "Timestamp": scene.at(offset * 2),
                "ActionType": "LDAP query",
                "Application": "Active Directory",
                "QueryType": "LDAP",
                "QueryTarget": target,
                "Query": query,
                "Protocol": "Ldap",
                "AccountName": user.name,
                "AccountDomain": "corp.contoso.com",
                "AccountUpn": user.upn,
                "AccountSid": user.sid,
                "AccountObjectId": user.object_id,
                "AccountDisplayName": user.display_name,
                "DeviceName": device.name,
                "IPAddress": device.local_ip,
                "DestinationDeviceName": dc.name,
                "DestinationIPAddress": dc.local_ip,
                "DestinationPort": "389",
                "ReportId": scene.guid(),
            },
        )
    scene.emit(
        "IdentityLogonEvents",
        {
            "Timestamp": scene.at(5),
            "ActionType": "LogonSuccess",
            "Application": "Active Directory",
            "LogonType": "Resource access",
            "Protocol": "Kerberos",
            "AccountName": user.name,
            "AccountUpn": user.upn,
            "AccountDomain": "corp.contoso.com",
            "AccountSid": user.sid,
            "DeviceName": device.name,
            "IPAddress": device.local_ip,
            "DestinationDeviceName": dc.name,
            "ReportId": scene.guid(),
            "AdditionalFields": {
                "Spns": ["MSSQLSvc/srv-sql01.corp.contoso.com:1433"],
                "AttackTechniques": "Kerberoasting (T1558.003)",
                "EncryptionType": "Rc4Hmac",
            },
        },
    )


def qr_code_phish(scene: Scene) -> None:
    user = scene.person()
    message = scene.guid()
    _inbound_mail(
        scene,
        user,
        message,
        ("DocuSign", "dse@docusign-esign.net", "bounce@docusign-esign.net"),
        SenderIPv4=f"45.153.241.{scene.rng.randrange(2, 250)}",
        Subject="Your document is ready: scan to review and sign",
        UrlCount=1,
        AuthenticationDetails='{"SPF":"pass","DKIM":"pass","DMARC":"pass",'
        '"CompAuth":"pass"}',
    )
    _mail_url(
        scene,
        message,
        f"https://docusign-esign.net/s/{scene.hexdigits(12)}",
        "QRCode",
    )


def bec_impersonation(scene: Scene) -> None:
    user = scene.person()
    _inbound_mail(
        scene,
        user,
        scene.guid(),
        (
            "Megan Bowen (CEO)",
            "megan.bowen.office@outlook-mail.biz",
            "megan.bowen.office@outlook-mail.biz",
        ),
        SenderIPv4="193.29.57.140",
        Subject="Are you at your desk? I need a quick task done today",
        ThreatTypes="Phish",
        ThreatClassification="Task",
        DetectionMethods='{"Phish":["Impersonation user"]}',
        ConfidenceLevel='{"Phish":"Low"}',
    )
