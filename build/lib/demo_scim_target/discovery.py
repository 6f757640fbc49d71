"""Discovery documents: 1.1 ServiceProviderConfigs (Okta flavour) and 2.0
ServiceProviderConfig / Schemas / ResourceTypes describing exactly what the store keeps."""

from __future__ import annotations

from .common import CORE11, CORE20
from .patch import ENTERPRISE
from .store import GROUP, USER

OKTA_PROVIDERCONFIG = "urn:okta:schemas:scim:providerconfig:1.0"
CAPABILITIES = [
    "GROUP_PUSH", "IMPORT_NEW_USERS", "IMPORT_PROFILE_UPDATES", "PUSH_NEW_USERS",
    "PUSH_PASSWORD_UPDATES", "PUSH_PENDING_USERS", "PUSH_PROFILE_UPDATES",
    "PUSH_USER_DEACTIVATION", "REACTIVATE_USERS",
]
BEARER = {"type": "oauthbearertoken", "name": "OAuth Bearer Token",
          "description": "Authentication scheme using the OAuth Bearer Token Standard",
          "specUri": "https://www.rfc-editor.org/info/rfc6750", "primary": True}


def spc11(name: str) -> dict:
    return {
        "schemas": [CORE11, OKTA_PROVIDERCONFIG],
        "documentationUrl": f"https://example.invalid/{name}/scim",
        "patch": {"supported": True}, "bulk": {"supported": False},
        "filter": {"supported": True, "maxResults": 200},
        "changePassword": {"supported": True}, "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [{**BEARER, "specUrl": BEARER["specUri"]}],
        OKTA_PROVIDERCONFIG: {"userManagementCapabilities": CAPABILITIES},
    }


def spc20(base: str) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": 200},
        "changePassword": {"supported": True}, "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [BEARER],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }


def a(name, type_="string", *, multi=False, required=False, mutability="readWrite",
      returned="default", unique="none", case_exact=False, sub=None, refs=None, canonical=None):
    attr = {"name": name, "type": type_, "multiValued": multi, "description": name,
            "required": required, "caseExact": case_exact, "mutability": mutability,
            "returned": returned, "uniqueness": unique}
    if sub:
        attr["subAttributes"] = sub
    if refs:
        attr["referenceTypes"] = refs
    if canonical:
        attr["canonicalValues"] = canonical
    return attr


def _typed_multi(name: str, kinds: list[str]) -> dict:
    return a(name, "complex", multi=True, sub=[a("value"), a("display"),
             a("type", canonical=kinds), a("primary", "boolean")])


USER_SCHEMA = {"id": CORE20[USER], "name": "User", "description": "User Account", "attributes": [
    a("userName", required=True, unique="server"),
    a("name", "complex", sub=[a("formatted"), a("familyName"), a("givenName"), a("middleName"),
                              a("honorificPrefix"), a("honorificSuffix")]),
    a("displayName"), a("nickName"), a("title"), a("userType"), a("locale"),
    a("preferredLanguage"), a("timezone"), a("active", "boolean"),
    a("password", mutability="writeOnly", returned="never", case_exact=True),
    _typed_multi("emails", ["work", "home", "other"]),
    _typed_multi("phoneNumbers", ["work", "home", "mobile", "fax", "pager", "other"]),
    a("profileUrl", "reference", refs=["external"]),
    _typed_multi("ims", ["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
    _typed_multi("photos", ["photo", "thumbnail"]),
    a("addresses", "complex", multi=True, sub=[a("formatted"), a("streetAddress"), a("locality"), a("region"),
      a("postalCode"), a("country"), a("type", canonical=["work", "home", "other"]), a("primary", "boolean")]),
    _typed_multi("entitlements", []), _typed_multi("roles", []), _typed_multi("x509Certificates", []),
    a("groups", "complex", multi=True, mutability="readOnly", sub=[
        a("value", mutability="readOnly", case_exact=True),
        a("$ref", "reference", mutability="readOnly", refs=["Group"], case_exact=True),
        a("display", mutability="readOnly"),
        a("type", mutability="readOnly", canonical=["direct", "indirect"])]),
]}
GROUP_SCHEMA = {"id": CORE20[GROUP], "name": "Group", "description": "Group", "attributes": [
    a("displayName", required=True, unique="server"),
    a("members", "complex", multi=True, sub=[
        a("value", mutability="immutable", case_exact=True),
        a("$ref", "reference", mutability="immutable", refs=["User", "Group"], case_exact=True),
        a("type", mutability="immutable", canonical=["User", "Group"]),
        a("display")]),
]}
ENTERPRISE_SCHEMA = {"id": ENTERPRISE, "name": "EnterpriseUser", "description": "Enterprise User",
                     "attributes": [
    a("employeeNumber"), a("costCenter"), a("organization"), a("division"), a("department"),
    a("manager", "complex", sub=[a("value", case_exact=True),
                                 a("$ref", "reference", refs=["User"], case_exact=True),
                                 a("displayName", mutability="readOnly")]),
]}


def schemas(base: str) -> list[dict]:
    return [{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], **s,
             "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{s['id']}"}}
            for s in (USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_SCHEMA)]


def resource_types(base: str) -> list[dict]:
    rt = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
    return [
        {"schemas": [rt], "id": "User", "name": "User", "description": "User Account",
         "endpoint": "/Users", "schema": CORE20[USER],
         "schemaExtensions": [{"schema": ENTERPRISE, "required": False}],
         "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"}},
        {"schemas": [rt], "id": "Group", "name": "Group", "description": "Group",
         "endpoint": "/Groups", "schema": CORE20[GROUP],
         "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/Group"}},
    ]
