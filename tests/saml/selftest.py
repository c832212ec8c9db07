#!/usr/bin/env python3
"""Self-test of tests/saml/idp.py.

Starts the IdP on a free port, plays a pysaml2 service provider against it
(HTTP-Redirect AuthnRequest, HTTP-POST response) and checks every endpoint
and variant, with pysaml2's own SP response parsing and with ``xmlsec1
--verify`` against the IdP (or the other) certificate.

    target/tools/venv/bin/python tests/saml/selftest.py

Exits 0 when every check passed; the last line is "N passed, N failed".
"""

from __future__ import annotations

import base64
import datetime
import html.parser
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zlib

warnings.filterwarnings("ignore", message=r".*CFB has been moved.*")

from lxml import etree  # noqa: E402

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT  # noqa: E402
from saml2.client import Saml2Client  # noqa: E402
from saml2.config import SPConfig  # noqa: E402
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS  # noqa: E402
from saml2.sigver import get_xmlsec_binary  # noqa: E402

# pysaml2 logs every refused response at ERROR; the verdicts are checked here.
logging.getLogger("saml2").addHandler(logging.NullHandler())
logging.getLogger("saml2").propagate = False

HERE = os.path.dirname(os.path.abspath(__file__))
IDP = os.path.join(HERE, "idp.py")

NS = {
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
ASSERTION_NODE = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
RESPONSE_NODE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
SP_ENTITY = "http://127.0.0.1:1/sp"
ACS = "http://127.0.0.1:1/acs"
GIVEN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"
EMAIL = "ada@example.com"

PASSED = 0
FAILED = 0


def check(cond: bool, what: str) -> bool:
    global PASSED, FAILED
    if cond:
        PASSED += 1
        print(f"  ok   {what}")
    else:
        FAILED += 1
        print(f"  FAIL {what}")
    return cond


# --------------------------------------------------------------------------
# plumbing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


class FormParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.action = None
        self.method = None
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action, self.method = a.get("action"), a.get("method")
        elif tag == "input" and a.get("type") == "hidden":
            self.inputs[a.get("name")] = a.get("value", "")


def parse_form(body: bytes) -> FormParser:
    p = FormParser()
    p.feed(body.decode("utf-8"))
    return p


def xml_root(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))


def xmlsec_verify(xml: bytes, cert_file: str, node_name: str, node_id: str) -> bool:
    """Verify the signature of the element with that ID, trusting only cert_file
    (the embedded ds:X509Data is ignored, as pysaml2 does)."""
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        f.write(xml)
        f.flush()
        cmd = [
            get_xmlsec_binary(), "--verify",
            "--enabled-reference-uris", "empty,same-doc",
            "--enabled-key-data", "raw-x509-cert",
            "--pubkey-cert-pem", cert_file,
            "--id-attr:ID", node_name,
            "--node-id", node_id,
            f.name,
        ]
        r = subprocess.run(cmd, capture_output=True)
        return r.returncode == 0


def sp_client(idp_metadata: bytes, **extra) -> Saml2Client:
    sp = {
        "endpoints": {"assertion_consumer_service": [(ACS, BINDING_HTTP_POST)]},
        "allow_unsolicited": True,
        "want_response_signed": False,
        "want_assertions_signed": False,
        "want_assertions_or_response_signed": True,
        "authn_requests_signed": False,
        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
    }
    sp.update(extra)
    conf = SPConfig()
    conf.load(
        {
            "entityid": SP_ENTITY,
            "xmlsec_binary": get_xmlsec_binary(),
            "metadata": {"inline": [idp_metadata.decode("utf-8")]},
            "service": {"sp": sp},
            "accepted_time_diff": 5,
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=conf)


def parse_time(s: str) -> datetime.datetime:
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Ctx:
    def __init__(self, base: str, idp_cert: str, other_cert: str, metadata: bytes, metadata2: bytes):
        self.base = base
        self.idp_entity = f"{base}/metadata"
        self.idp_cert = idp_cert
        self.other_cert = other_cert
        self.client = sp_client(metadata)
        self.client2 = sp_client(metadata2)  # trusts both certificates

    def login(self, extra: dict | list, relay_state: str = "rs-42", client=None):
        """SP-initiated login: returns (request id, form, xml bytes)."""
        client = client or self.client
        req_id, info = client.prepare_for_authenticate(
            entityid=self.idp_entity, relay_state=relay_state, binding=BINDING_HTTP_REDIRECT
        )
        location = dict(info["headers"])["Location"]
        url = location + "&" + urllib.parse.urlencode(extra)
        status, ctype, body = http_get(url)
        if status != 200:
            raise AssertionError(f"GET /sso -> {status}: {body[:300]!r}")
        form = parse_form(body)
        xml = base64.b64decode(form.inputs["SAMLResponse"])
        return req_id, form, xml, ctype

    def sp_parse(self, xml: bytes, req_id: str | None, client=None):
        """pysaml2 SP verdict: (response or None, exception or None)."""
        client = client or self.client
        b64 = base64.b64encode(xml).decode("ascii")
        outstanding = {req_id: "/"} if req_id else {}
        try:
            resp = client.parse_authn_request_response(b64, BINDING_HTTP_POST, outstanding=outstanding)
            return resp, None
        except Exception as exc:  # noqa: BLE001
            return None, exc


def signed_ids(root: etree._Element) -> list[str]:
    """IDs referenced by the ds:Signature elements of the document."""
    return [r.get("URI")[1:] for r in root.iterfind(".//ds:Signature/ds:SignedInfo/ds:Reference", NS)]


def direct_assertions(root):
    return root.findall("saml:Assertion", NS)


# --------------------------------------------------------------------------
# the checks


def test_metadata(ctx: Ctx, idp_cert_b64: str, other_cert_b64: str):
    print("metadata")
    for certs, expected in (("", [idp_cert_b64]), ("1", [idp_cert_b64]),
                            ("2", [idp_cert_b64, other_cert_b64]), ("0", [])):
        url = f"{ctx.base}/metadata" + (f"?certs={certs}" if certs else "")
        status, ctype, body = http_get(url)
        root = xml_root(body)
        check(status == 200 and "xml" in ctype, f"GET {url} -> 200 xml")
        check(root.get("entityID") == ctx.idp_entity, "entityID is BASE/metadata")
        sso = root.findall("md:IDPSSODescriptor/md:SingleSignOnService", NS)
        check(
            len(sso) == 1
            and sso[0].get("Binding") == BINDING_HTTP_REDIRECT
            and sso[0].get("Location") == f"{ctx.base}/sso",
            "one HTTP-Redirect SingleSignOnService at BASE/sso",
        )
        kds = root.findall("md:IDPSSODescriptor/md:KeyDescriptor", NS)
        got = [kd.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS) for kd in kds]
        check(all(kd.get("use") == "signing" for kd in kds) and got == expected,
              f"certs={certs or 'default'}: {len(expected)} signing KeyDescriptor(s) with the right certificates")


def check_good(ctx: Ctx, label: str, xml: bytes, req_id: str | None, sign: str, attrs: dict, email=EMAIL,
               relay_ok=True):
    root = xml_root(xml)
    assertions = direct_assertions(root)
    check(len(assertions) == 1, f"{label}: exactly one assertion")
    a = assertions[0]
    resp_sig = root.find("ds:Signature", NS) is not None
    ass_sig = a.find("ds:Signature", NS) is not None
    check(resp_sig == (sign in ("both", "response")), f"{label}: Response signature present iff sign includes response")
    check(ass_sig == (sign in ("both", "assertion")), f"{label}: Assertion signature present iff sign includes assertion")
    if resp_sig:
        check(xmlsec_verify(xml, ctx.idp_cert, RESPONSE_NODE, root.get("ID")),
              f"{label}: xmlsec1 verifies the Response signature with the IdP certificate")
    if ass_sig:
        check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a.get("ID")),
              f"{label}: xmlsec1 verifies the Assertion signature with the IdP certificate")
    for sig in root.iter("{%s}Signature" % NS["ds"]):
        check(
            sig.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm")
            == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
            and sig.find("ds:SignedInfo/ds:Reference/ds:DigestMethod", NS).get("Algorithm")
            == "http://www.w3.org/2001/04/xmlenc#sha256"
            and sig.find("ds:SignedInfo/ds:CanonicalizationMethod", NS).get("Algorithm")
            == "http://www.w3.org/2001/10/xml-exc-c14n#"
            and [t.get("Algorithm") for t in sig.findall("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform", NS)]
            == ["http://www.w3.org/2000/09/xmldsig#enveloped-signature", "http://www.w3.org/2001/10/xml-exc-c14n#"],
            f"{label}: signature is enveloped, exc-c14n, rsa-sha256/sha256",
        )
    # the fields
    check(root.findtext("saml:Issuer", namespaces=NS) == ctx.idp_entity
          and a.findtext("saml:Issuer", namespaces=NS) == ctx.idp_entity, f"{label}: Issuer is the IdP entity id")
    check(root.get("Destination") == ACS, f"{label}: Destination is the ACS")
    check(root.get("InResponseTo") == req_id, f"{label}: Response InResponseTo = {req_id}")
    scd = a.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
    check(scd.get("Recipient") == ACS and scd.get("InResponseTo") == req_id,
          f"{label}: SubjectConfirmationData Recipient/InResponseTo")
    nid = a.find("saml:Subject/saml:NameID", NS)
    check(nid.text == email and nid.get("Format") == NAMEID_FORMAT_EMAILADDRESS, f"{label}: NameID emailAddress {email}")
    check(a.findtext("saml:Conditions/saml:AudienceRestriction/saml:Audience", namespaces=NS) == SP_ENTITY,
          f"{label}: Audience is the SP entity id")
    cond = a.find("saml:Conditions", NS)
    t = now()
    nb, noa = parse_time(cond.get("NotBefore")), parse_time(cond.get("NotOnOrAfter"))
    check(abs((t - nb).total_seconds() - 60) < 15 and abs((noa - t).total_seconds() - 300) < 15,
          f"{label}: NotBefore = now-1min, NotOnOrAfter = now+5min")
    check(scd.get("NotOnOrAfter") == cond.get("NotOnOrAfter"), f"{label}: SubjectConfirmationData NotOnOrAfter")
    check(a.find("saml:AuthnStatement", NS) is not None, f"{label}: AuthnStatement present")
    check(root.find("samlp:Status/samlp:StatusCode", NS).get("Value") == "urn:oasis:names:tc:SAML:2.0:status:Success",
          f"{label}: status Success")
    got_attrs = {
        at.get("Name"): [v.text for v in at.findall("saml:AttributeValue", NS)]
        for at in a.findall("saml:AttributeStatement/saml:Attribute", NS)
    }
    check(got_attrs == attrs, f"{label}: attributes {attrs}")

    # pysaml2 as the SP
    resp, exc = ctx.sp_parse(xml, req_id)
    if not check(resp is not None, f"{label}: pysaml2 SP accepts it" + (f" (got {exc!r})" if exc else "")):
        return
    check(resp.name_id.text == email, f"{label}: pysaml2 name_id = {email}")
    check(resp.in_response_to == req_id, f"{label}: pysaml2 in_response_to")
    pa = resp.assertion
    check(pa.conditions.audience_restriction[0].audience[0].text == SP_ENTITY, f"{label}: pysaml2 audience")
    check(pa.subject.subject_confirmation[0].subject_confirmation_data.recipient == ACS, f"{label}: pysaml2 recipient")
    check({k: v for k, v in resp.ava.items()} == attrs, f"{label}: pysaml2 ava = {resp.ava}")


def test_good(ctx: Ctx):
    attrs = {GIVEN: ["Ada"], "groups": ["admins", "devs"]}
    params = [("email", EMAIL), (f"attr.{GIVEN}", "Ada"), ("attr.groups", "admins"), ("attr.groups", "devs")]
    for sign in (None, "both", "assertion", "response"):
        label = f"good sign={sign or 'default'}"
        print(label)
        p = params + ([("sign", sign)] if sign else [])
        req_id, form, xml, ctype = ctx.login(p, relay_state="rs-42")
        check(ctype.startswith("text/html"), f"{label}: text/html")
        check(form.action == ACS and (form.method or "").lower() == "post", f"{label}: form POSTs to the ACS")
        check(set(form.inputs) == {"SAMLResponse", "RelayState"} and form.inputs["RelayState"] == "rs-42",
              f"{label}: hidden SAMLResponse + RelayState echoed")
        check_good(ctx, label, xml, req_id, sign or "both", attrs)

    print("good, no attributes, explicit variant=good")
    req_id, form, xml, _ = ctx.login([("email", "bob@example.org"), ("variant", "good")], relay_state="")
    check(form.inputs.get("RelayState") == "", "empty RelayState kept as an empty input")
    check(xml_root(xml).find("saml:Assertion/saml:AttributeStatement", NS) is None, "no AttributeStatement")
    check_good(ctx, "good no-attrs", xml, req_id, "both", {}, email="bob@example.org")

    print("IdP-initiated /start")
    q = urllib.parse.urlencode([("sp", SP_ENTITY), ("acs", ACS), ("email", EMAIL), ("RelayState", "/after"),
                                (f"attr.{GIVEN}", "Ada")])
    status, ctype, body = http_get(f"{ctx.base}/start?{q}")
    check(status == 200 and ctype.startswith("text/html"), "/start -> 200 text/html")
    form = parse_form(body)
    check(form.action == ACS and form.inputs.get("RelayState") == "/after", "/start: form to ACS, RelayState given")
    xml = base64.b64decode(form.inputs["SAMLResponse"])
    root = xml_root(xml)
    check(root.get("InResponseTo") is None
          and root.find(".//saml:SubjectConfirmationData", NS).get("InResponseTo") is None,
          "/start: no InResponseTo anywhere")
    check_good(ctx, "/start", xml, None, "both", {GIVEN: ["Ada"]})
    q = urllib.parse.urlencode([("sp", SP_ENTITY), ("acs", ACS), ("email", EMAIL), ("sign", "assertion")])
    status, _, body = http_get(f"{ctx.base}/start?{q}")
    check(status == 200 and parse_form(body).inputs.get("RelayState") == "", "/start without RelayState: empty")


def get_variant(ctx: Ctx, variant: str, email=EMAIL, sign=None, attrs=()):
    p = [("email", email), ("variant", variant)] + list(attrs)
    if sign:
        p.append(("sign", sign))
    req_id, form, xml, _ = ctx.login(p)
    check(form.action == ACS and form.inputs.get("RelayState") == "rs-42", f"{variant}: form to ACS with RelayState")
    return req_id, xml, xml_root(xml)


def expect_rejected(ctx: Ctx, variant: str, xml: bytes, req_id, client=None):
    resp, exc = ctx.sp_parse(xml, req_id, client=client)
    check(resp is None, f"{variant}: pysaml2 SP refuses it ({type(exc).__name__ if exc else 'ACCEPTED'})")


def test_variants(ctx: Ctx):
    a_id = lambda root: direct_assertions(root)[0].get("ID")  # noqa: E731

    print("tampered")
    req_id, xml, root = get_variant(ctx, "tampered")
    a = direct_assertions(root)[0]
    check(a.findtext("saml:Subject/saml:NameID", namespaces=NS) == "evil@evil.test", "tampered: NameID is evil")
    check(not xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a.get("ID")), "tampered: assertion signature invalid")
    check(not xmlsec_verify(xml, ctx.idp_cert, RESPONSE_NODE, root.get("ID")), "tampered: response signature invalid")
    expect_rejected(ctx, "tampered", xml, req_id)

    print("expired")
    req_id, xml, root = get_variant(ctx, "expired")
    a = direct_assertions(root)[0]
    cond = a.find("saml:Conditions", NS)
    t = now()
    check(parse_time(cond.get("NotOnOrAfter")) < t - datetime.timedelta(minutes=9)
          and parse_time(cond.get("NotBefore")) < t - datetime.timedelta(minutes=19),
          "expired: NotOnOrAfter 10 min ago, NotBefore 20 min ago")
    check(parse_time(a.find(".//saml:SubjectConfirmationData", NS).get("NotOnOrAfter")) < t,
          "expired: SubjectConfirmationData NotOnOrAfter in the past")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a.get("ID")), "expired: signature still valid")
    expect_rejected(ctx, "expired", xml, req_id)

    print("not_yet_valid")
    req_id, xml, root = get_variant(ctx, "not_yet_valid")
    a = direct_assertions(root)[0]
    check(parse_time(a.find("saml:Conditions", NS).get("NotBefore")) > now() + datetime.timedelta(minutes=9),
          "not_yet_valid: NotBefore 10 min ahead")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a.get("ID")), "not_yet_valid: signature valid")
    expect_rejected(ctx, "not_yet_valid", xml, req_id)

    print("wrong_audience")
    req_id, xml, root = get_variant(ctx, "wrong_audience")
    a = direct_assertions(root)[0]
    check(a.findtext(".//saml:Audience", namespaces=NS) == "http://wrong-audience.test/sp", "wrong_audience: Audience")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a.get("ID")), "wrong_audience: signature valid")
    expect_rejected(ctx, "wrong_audience", xml, req_id)

    print("wrong_recipient")
    req_id, xml, root = get_variant(ctx, "wrong_recipient")
    a = direct_assertions(root)[0]
    check(root.get("Destination") == "http://wrong-recipient.test/acs"
          and a.find(".//saml:SubjectConfirmationData", NS).get("Recipient") == "http://wrong-recipient.test/acs",
          "wrong_recipient: Destination and Recipient")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a.get("ID")), "wrong_recipient: signature valid")
    # pysaml2 7.5 only logs a Destination mismatch and does not check Recipient: no verdict to assert.
    resp, exc = ctx.sp_parse(xml, req_id)
    print(f"  info pysaml2 SP verdict on wrong_recipient: {'accepted' if resp else type(exc).__name__}"
          " (pysaml2 does not enforce Destination/Recipient)")

    print("wrong_issuer")
    req_id, xml, root = get_variant(ctx, "wrong_issuer")
    a = direct_assertions(root)[0]
    check(root.findtext("saml:Issuer", namespaces=NS) == "http://wrong-issuer.test/metadata"
          and a.findtext("saml:Issuer", namespaces=NS) == "http://wrong-issuer.test/metadata",
          "wrong_issuer: both Issuers")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a.get("ID")), "wrong_issuer: signed by the IdP key")
    expect_rejected(ctx, "wrong_issuer", xml, req_id)

    print("unsigned")
    for sign in (None, "both", "assertion", "response"):
        req_id, xml, root = get_variant(ctx, "unsigned", sign=sign)
        check(root.find(".//ds:Signature", NS) is None, f"unsigned sign={sign}: no ds:Signature")
        check(direct_assertions(root)[0].findtext(".//saml:NameID", namespaces=NS) == EMAIL,
              f"unsigned sign={sign}: otherwise a good response")
    expect_rejected(ctx, "unsigned", xml, req_id)

    print("other_key")
    for sign in ("both", "assertion", "response"):
        req_id, xml, root = get_variant(ctx, "other_key", sign=sign)
        a = direct_assertions(root)[0]
        ids = signed_ids(root)
        check(len(ids) == (2 if sign == "both" else 1), f"other_key sign={sign}: {len(ids)} signature(s)")
        for sid in ids:
            node = RESPONSE_NODE if sid == root.get("ID") else ASSERTION_NODE
            check(not xmlsec_verify(xml, ctx.idp_cert, node, sid), f"other_key sign={sign}: {sid} fails with IdP cert")
            check(xmlsec_verify(xml, ctx.other_cert, node, sid), f"other_key sign={sign}: {sid} verifies with other cert")
        expect_rejected(ctx, f"other_key sign={sign}", xml, req_id)
    req_id, xml, root = get_variant(ctx, "other_key")
    resp, exc = ctx.sp_parse(xml, req_id, client=ctx.client2)
    check(resp is not None and resp.name_id.text == EMAIL,
          f"other_key: accepted by an SP trusting /metadata?certs=2 ({exc!r})")

    print("sha1")
    req_id, xml, root = get_variant(ctx, "sha1")
    sigs = list(root.iter("{%s}Signature" % NS["ds"]))
    check(len(sigs) == 2 and all(
        s.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm") == "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
        and s.find("ds:SignedInfo/ds:Reference/ds:DigestMethod", NS).get("Algorithm")
        == "http://www.w3.org/2000/09/xmldsig#sha1" for s in sigs), "sha1: rsa-sha1 + sha1 in both signatures")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a_id(root))
          and xmlsec_verify(xml, ctx.idp_cert, RESPONSE_NODE, root.get("ID")), "sha1: signatures valid")
    resp, exc = ctx.sp_parse(xml, req_id)
    print(f"  info pysaml2 SP verdict on sha1: {'accepted' if resp else type(exc).__name__}")

    print("status_failure")
    for sign in (None, "assertion"):
        req_id, xml, root = get_variant(ctx, "status_failure", sign=sign)
        sc = root.find("samlp:Status/samlp:StatusCode", NS)
        check(sc.get("Value") == "urn:oasis:names:tc:SAML:2.0:status:Responder"
              and sc.find("samlp:StatusCode", NS).get("Value") == "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed",
              f"status_failure sign={sign}: Responder/AuthnFailed")
        check(root.find(".//saml:Assertion", NS) is None, f"status_failure sign={sign}: no assertion")
        check(root.get("InResponseTo") == req_id, f"status_failure sign={sign}: InResponseTo")
        has_sig = root.find("ds:Signature", NS) is not None
        check(has_sig == (sign is None), f"status_failure sign={sign}: response signed iff sign includes response")
        if has_sig:
            check(xmlsec_verify(xml, ctx.idp_cert, RESPONSE_NODE, root.get("ID")), "status_failure: signature valid")
        expect_rejected(ctx, f"status_failure sign={sign}", xml, req_id)

    print("dtd")
    req_id, xml, root = get_variant(ctx, "dtd")
    check(b"<!DOCTYPE samlp:Response [<!ENTITY ent" in xml[:200], "dtd: DOCTYPE with an internal entity")
    check(root.getroottree().docinfo.internalDTD is not None, "dtd: lxml sees the internal subset")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a_id(root))
          and xmlsec_verify(xml, ctx.idp_cert, RESPONSE_NODE, root.get("ID")), "dtd: signatures valid")
    stripped = xml.replace(xml[xml.index(b"<!DOCTYPE"):xml.index(b"]>") + 2], b"")
    check_good(ctx, "dtd without its DOCTYPE", stripped, req_id, "both", {})
    expect_rejected(ctx, "dtd", xml, req_id)

    print("comment_nameid")
    victim = "victim@example.com.evil.test"
    req_id, xml, root = get_variant(ctx, "comment_nameid", email=victim)
    nid = direct_assertions(root)[0].find("saml:Subject/saml:NameID", NS)
    check(b"victim@example.com<!---->.evil.test</saml:NameID>" in xml, "comment_nameid: comment inside NameID")
    check(nid.text == "victim@example.com" and "".join(nid.itertext()) == victim,
          "comment_nameid: first text node is the prefix, full text is the email")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a_id(root))
          and xmlsec_verify(xml, ctx.idp_cert, RESPONSE_NODE, root.get("ID")), "comment_nameid: signatures valid")
    resp, exc = ctx.sp_parse(xml, req_id)
    check(resp is None or resp.name_id.text != "victim@example.com",
          f"comment_nameid: pysaml2 never yields victim@example.com "
          f"({'name_id=' + repr(resp.name_id.text) if resp else type(exc).__name__})")
    _, xml2, _ = get_variant(ctx, "comment_nameid", email="ada@example.com")
    check(b">ada@example<!---->.com</saml:NameID>" in xml2, "comment_nameid: one-dot domain split before its dot")

    print("xsw_second_assertion / xsw_second_assertion_after")
    for variant, evil_first in (("xsw_second_assertion", True), ("xsw_second_assertion_after", False)):
        req_id, xml, root = get_variant(ctx, variant, attrs=[("attr.mail", EMAIL)])
        asrts = direct_assertions(root)
        check(len(asrts) == 2, f"{variant}: two assertions")
        evil, good = (asrts[0], asrts[1]) if evil_first else (asrts[1], asrts[0])
        check(evil.find("ds:Signature", NS) is None and good.find("ds:Signature", NS) is not None,
              f"{variant}: the {'first' if evil_first else 'second'} one is the unsigned evil one")
        check(evil.findtext(".//saml:NameID", namespaces=NS) == "evil@evil.test"
              and evil.findtext(".//saml:AttributeValue", namespaces=NS) == "evil@evil.test"
              and good.findtext(".//saml:NameID", namespaces=NS) == EMAIL, f"{variant}: evil NameID and mail attribute")
        check(evil.get("ID") != good.get("ID"), f"{variant}: distinct IDs")
        check(root.find("ds:Signature", NS) is None, f"{variant}: default sign=assertion (no Response signature)")
        check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, good.get("ID")), f"{variant}: signed one verifies")
        expect_rejected(ctx, variant, xml, req_id)

    print("xsw_extensions")
    req_id, xml, root = get_variant(ctx, "xsw_extensions")
    asrts = direct_assertions(root)
    inner = root.findall("samlp:Extensions/saml:Assertion", NS)
    check(len(asrts) == 1 and len(inner) == 1, "xsw_extensions: one direct assertion, one in Extensions")
    check([c.tag.split("}")[1] for c in root] == ["Issuer", "Extensions", "Status", "Assertion"],
          "xsw_extensions: Issuer, Extensions, Status, Assertion")
    check(asrts[0].find("ds:Signature", NS) is None
          and asrts[0].findtext(".//saml:NameID", namespaces=NS) == "evil@evil.test", "xsw_extensions: direct one is evil")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, inner[0].get("ID"))
          and inner[0].findtext(".//saml:NameID", namespaces=NS) == EMAIL, "xsw_extensions: wrapped one verifies")
    expect_rejected(ctx, "xsw_extensions", xml, req_id)
    _, xml_b, root_b = get_variant(ctx, "xsw_extensions", sign="both")
    check([c.tag.split("}")[1] for c in root_b] == ["Issuer", "Signature", "Extensions", "Status", "Assertion"]
          and not xmlsec_verify(xml_b, ctx.idp_cert, RESPONSE_NODE, root_b.get("ID")),
          "xsw_extensions sign=both: Extensions after Signature, Response signature broken")

    print("xsw_advice")
    req_id, xml, root = get_variant(ctx, "xsw_advice")
    asrts = direct_assertions(root)
    check(len(asrts) == 1 and asrts[0].find("ds:Signature", NS) is None
          and asrts[0].findtext("saml:Subject/saml:NameID", namespaces=NS) == "evil@evil.test",
          "xsw_advice: the only direct assertion is the unsigned evil one")
    inner = asrts[0].findall("saml:Advice/saml:Assertion", NS)
    check(len(inner) == 1 and inner[0].findtext("saml:Subject/saml:NameID", namespaces=NS) == EMAIL,
          "xsw_advice: signed assertion inside its Advice")
    check([c.tag.split("}")[1] for c in asrts[0]] == ["Issuer", "Subject", "Conditions", "Advice", "AuthnStatement"],
          "xsw_advice: Advice placed after Conditions")
    check(xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, inner[0].get("ID")), "xsw_advice: wrapped one verifies")
    expect_rejected(ctx, "xsw_advice", xml, req_id)

    print("xsw_duplicate_id")
    req_id, xml, root = get_variant(ctx, "xsw_duplicate_id")
    asrts = direct_assertions(root)
    check(len(asrts) == 2 and asrts[0].get("ID") == asrts[1].get("ID"), "xsw_duplicate_id: two assertions, same ID")
    check(asrts[0].find("ds:Signature", NS) is None
          and asrts[0].findtext(".//saml:NameID", namespaces=NS) == "evil@evil.test"
          and asrts[1].find("ds:Signature", NS) is not None, "xsw_duplicate_id: evil unsigned one first")
    expect_rejected(ctx, "xsw_duplicate_id", xml, req_id)

    print("tampered with sign=response, sign=assertion")
    for sign in ("response", "assertion"):
        req_id, xml, root = get_variant(ctx, "tampered", sign=sign)
        sid = signed_ids(root)[0]
        node = RESPONSE_NODE if sid == root.get("ID") else ASSERTION_NODE
        check(not xmlsec_verify(xml, ctx.idp_cert, node, sid), f"tampered sign={sign}: signature invalid")


def raw_request_url(ctx: Ctx, req_id: str, destination: str | None, acs: str | None, issuer: str | None = SP_ENTITY):
    """An unsigned AuthnRequest made by hand, as a minimal SP would, in a Redirect-binding URL."""
    attrs = f'ID="{req_id}" Version="2.0" IssueInstant="{now().strftime("%Y-%m-%dT%H:%M:%SZ")}"'
    if destination:
        attrs += f' Destination="{destination}"'
    if acs:
        attrs += f' AssertionConsumerServiceURL="{acs}" ProtocolBinding="{BINDING_HTTP_POST}"'
    xml = (
        f'<samlp:AuthnRequest xmlns:samlp="{NS["samlp"]}" xmlns:saml="{NS["saml"]}" {attrs}>'
        + (f"<saml:Issuer>{issuer}</saml:Issuer>" if issuer else "")
        + f'<samlp:NameIDPolicy Format="{NAMEID_FORMAT_EMAILADDRESS}" AllowCreate="true"/>'
        "</samlp:AuthnRequest>"
    )
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = comp.compress(xml.encode()) + comp.flush()
    return f"{ctx.base}/sso?" + urllib.parse.urlencode({"SAMLRequest": base64.b64encode(deflated).decode()})


def test_raw_requests(ctx: Ctx):
    print("hand-made AuthnRequests")
    url = raw_request_url(ctx, "_hand1", f"{ctx.base}/sso", ACS)
    status, _, body = http_get(url + "&RelayState=x%20y&email=" + urllib.parse.quote(EMAIL))
    check(status == 200, "minimal request with Destination + ACS URL -> 200")
    form = parse_form(body)
    check(form.inputs.get("RelayState") == "x y", "RelayState echoed (decoded)")
    check_good(ctx, "hand-made", base64.b64decode(form.inputs["SAMLResponse"]), "_hand1", "both", {})
    url = raw_request_url(ctx, "_hand2", None, None)
    status, _, body = http_get(url + "&email=a@b.c&acs=" + urllib.parse.quote(ACS))
    check(status == 200 and parse_form(body).action == ACS, "request without Destination/ACS + acs parameter -> 200")
    status, _, body = http_get(url + "&email=a@b.c")
    check(status == 400, f"request without ACS and no acs parameter -> 400 ({body[:50]!r})")
    url = raw_request_url(ctx, "_hand3", "http://elsewhere.test/sso", ACS)
    status, _, body = http_get(url + "&email=a@b.c")
    check(status == 400, f"request with another Destination -> 400 ({body[:60]!r})")
    url = raw_request_url(ctx, "_hand4", None, ACS, issuer=None)
    status, _, body = http_get(url + "&email=a@b.c")
    check(status == 400, f"request without Issuer -> 400 ({body[:50]!r})")


def test_concurrency(ctx: Ctx):
    print("concurrency")
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        q = urllib.parse.urlencode([("sp", SP_ENTITY), ("acs", ACS), ("email", f"u{i}@example.com")])
        status, _, body = http_get(f"{ctx.base}/start?{q}")
        xml = base64.b64decode(parse_form(body).inputs["SAMLResponse"])
        root = xml_root(xml)
        a = direct_assertions(root)[0]
        return (status == 200 and a.findtext(".//saml:NameID", namespaces=NS) == f"u{i}@example.com"
                and xmlsec_verify(xml, ctx.idp_cert, ASSERTION_NODE, a.get("ID")))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(16)))
    check(all(results), f"16 parallel /start requests, 8 at a time: {sum(results)}/16 good")


def test_errors(ctx: Ctx):
    print("errors")
    status, _, body = http_get(f"{ctx.base}/health")
    check(status == 200 and body == b"ok", "/health -> 200 ok")
    status, _, _ = http_get(f"{ctx.base}/nope")
    check(status == 404, "unknown path -> 404")
    req_id, info = ctx.client.prepare_for_authenticate(entityid=ctx.idp_entity, binding=BINDING_HTTP_REDIRECT)
    loc = dict(info["headers"])["Location"]
    for extra, what in (("", "missing email"), ("&email=a@b.c&variant=nope", "unknown variant"),
                        ("&email=a@b.c&sign=nope", "bad sign")):
        status, _, body = http_get(loc + extra)
        check(status == 400, f"/sso with {what} -> 400 ({body[:60]!r})")
    status, _, _ = http_get(f"{ctx.base}/sso?SAMLRequest=garbage&email=a@b.c")
    check(status == 400, "/sso with a garbage SAMLRequest -> 400")
    status, _, _ = http_get(f"{ctx.base}/start?email=a@b.c")
    check(status == 400, "/start without sp/acs -> 400")
    status, _, _ = http_get(f"{ctx.base}/metadata?certs=7")
    check(status == 400, "/metadata?certs=7 -> 400")


def main() -> int:
    port = free_port()
    python = sys.executable
    errlog = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: it must never fill up
    proc = subprocess.Popen(
        [python, IDP, "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=errlog, text=True,
    )
    try:
        line = proc.stdout.readline()
        print(f"idp.py said: {line.strip()!r}")
        check(line == f"READY {port}\n", "idp.py prints READY <port>")
        base = f"http://127.0.0.1:{port}"
        _, _, md1 = http_get(f"{base}/metadata")
        _, _, md2 = http_get(f"{base}/metadata?certs=2")
        with tempfile.TemporaryDirectory() as tmp:
            idp_cert = os.path.join(tmp, "idp.pem")
            other_cert = os.path.join(tmp, "other.pem")
            for which, path in (("idp", idp_cert), ("other", other_cert)):
                _, _, pem = http_get(f"{base}/cert?which={which}")
                with open(path, "wb") as f:
                    f.write(pem)
            der_b64 = {}
            for which, path in (("idp", idp_cert), ("other", other_cert)):
                with open(path) as f:
                    der_b64[which] = "".join(l for l in f.read().splitlines() if "-----" not in l)
            ctx = Ctx(base, idp_cert, other_cert, md1, md2)
            for test in (lambda: test_metadata(ctx, der_b64["idp"], der_b64["other"]),
                         lambda: test_good(ctx), lambda: test_raw_requests(ctx),
                         lambda: test_variants(ctx), lambda: test_concurrency(ctx), lambda: test_errors(ctx)):
                try:
                    test()
                except Exception:  # noqa: BLE001
                    traceback.print_exc()
                    check(False, "test raised")
        print("SIGTERM")
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, f"idp.py exits 0 on SIGTERM (rc={rc})")
        rest = proc.stdout.read()
        check(rest == "", "nothing else on stdout")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errlog.seek(0)
        err = errlog.read()
        errlog.close()
        if FAILED:
            print("--- idp.py stderr ---")
            print(err[-4000:])
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
