#!/usr/bin/env python3
"""SAML 2.0 identity provider used as a test peer by the integration tests.

It wraps pysaml2's ``saml2.server.Server`` (signing and verifying through the
``xmlsec1`` binary) behind a threaded stdlib HTTP server. Nothing is
persisted: keys, certificates and the pysaml2 config are made at start.

Usage
-----
    python tests/saml/idp.py --port PORT [--host 127.0.0.1]

``--port 0`` picks a free port. At start the IdP generates, in a temporary
directory, an RSA-2048 signing key with a self-signed certificate (the IdP
key) and a second, unrelated RSA key + certificate (the "other" key, used only
by ``variant=other_key`` and ``/metadata?certs=2``). When it serves it prints
exactly one line ``READY <port>`` (the real port) to stdout and flushes it.
SIGTERM or SIGINT stop it cleanly (exit status 0, temporary directory removed).
Logs go to stderr only.

Below, BASE is ``http://HOST:PORT`` with HOST as given by ``--host``.

Endpoints
---------
GET /health
    200 ``text/plain`` body ``ok``.

GET /metadata[?certs=1|2|0]
    200 ``application/samlmetadata+xml``: an md:EntityDescriptor with
    entityID ``BASE/metadata`` and one md:IDPSSODescriptor
    (WantAuthnRequestsSigned="false", NameIDFormat emailAddress) holding one
    md:SingleSignOnService Binding
    ``urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect`` Location
    ``BASE/sso``.
    certs=1 (default): one md:KeyDescriptor use="signing" with the IdP
    certificate (ds:KeyInfo/ds:X509Data/ds:X509Certificate, base64 DER).
    certs=2: that KeyDescriptor, then a second use="signing" KeyDescriptor
    with the other certificate (so a response made with variant=other_key
    verifies against this metadata). certs=0: no KeyDescriptor at all.
    Any other value: 400. The certificates are self-signed RSA-2048, new at
    every start, identical between calls of one run.

GET /cert[?which=idp|other]
    200 ``application/x-pem-file``: the IdP (default) or other certificate,
    PEM. A convenience for tests; the metadata carries the same bytes.

GET /sso?SAMLRequest=...&RelayState=...&email=...[&attr.NAME=VALUE...][&sign=...][&variant=...]
    SP-initiated login, HTTP-Redirect binding: SAMLRequest is the base64 of
    the raw-DEFLATEd samlp:AuthnRequest. The request is not required to be
    signed (Signature/SigAlg parameters, if any, are ignored). It must carry
    a saml:Issuer (used as the Audience) and an AssertionConsumerServiceURL
    (the ACS; if it has none, the ``acs`` query parameter is used instead).
    Its Destination, if present, must be ``BASE/sso``. ProtocolBinding,
    NameIDPolicy and the rest are accepted and ignored (the answer is always
    HTTP-POST, NameID emailAddress). No SP metadata is needed: any Issuer is
    served. Answers
    200 ``text/html`` with an auto-submitting form (see "The HTML form").
    The response's InResponseTo (samlp:Response/@InResponseTo and
    SubjectConfirmationData/@InResponseTo) is the request's ID.
    400 ``text/plain`` (the reason) if the request cannot be parsed, lacks an
    Issuer, has another Destination, or a parameter is missing or invalid
    (no email, unknown variant or sign value).

GET /start?sp=SP_ENTITY_ID&acs=ACS_URL&email=...[&RelayState=...][&attr...][&sign=...][&variant=...]
    IdP-initiated login: the same response, for Audience ``sp`` and ACS
    ``acs``, without any InResponseTo attribute. RelayState is the
    ``RelayState`` parameter if given, else empty. 400 without sp, acs or
    email.

Common parameters of /sso and /start (the test appends them to the URL):
    email=ADDRESS       required; the subject, as NameID with
                        Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".
    attr.NAME=VALUE     any number; each distinct NAME becomes one
                        saml:Attribute Name="NAME" in the assertion's
                        AttributeStatement, with one xs:string
                        AttributeValue per occurrence (repeat the parameter
                        for several values, order kept). NameFormat is
                        ``...:attrname-format:uri`` when NAME contains ":"
                        and ``...:attrname-format:basic`` otherwise.
                        URL-encode NAME, e.g.
                        attr.http%3A%2F%2Fschemas.xmlsoap.org%2Fws%2F2005%2F05%2Fidentity%2Fclaims%2Fgivenname=Ada
                        No attr.* parameter: no AttributeStatement.
    sign=both|assertion|response
                        what is signed (default ``both``; for the xsw_*
                        variants the default is ``assertion``, see there).
                        ``both``: the assertion is signed, then the whole
                        Response (whose signature covers the signed
                        assertion). Ignored by ``unsigned``.
    variant=NAME        default ``good``; see "Variants".
    raw=1               debugging aid: answer 200 ``application/xml`` with
                        the Response XML itself instead of the HTML form.

The response (variant ``good``)
-------------------------------
    samlp:Response ID=fresh Version="2.0" IssueInstant=now
        Destination=ACS [InResponseTo=request ID]
      saml:Issuer Format=entity = ``BASE/metadata``
      ds:Signature (if sign is both or response)
      samlp:Status/samlp:StatusCode Value=...:status:Success
      saml:Assertion ID=fresh Version="2.0" IssueInstant=now
        saml:Issuer Format=entity = ``BASE/metadata``
        ds:Signature (if sign is both or assertion)
        saml:Subject
          saml:NameID Format=emailAddress = email
          saml:SubjectConfirmation Method=...:cm:bearer
            saml:SubjectConfirmationData NotOnOrAfter=now+5min
              Recipient=ACS [InResponseTo=request ID]
        saml:Conditions NotBefore=now-1min NotOnOrAfter=now+5min
          saml:AudienceRestriction/saml:Audience = SP entity id
        saml:AuthnStatement AuthnInstant=now SessionIndex=fresh
          saml:AuthnContext/saml:AuthnContextClassRef =
            urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport
        saml:AttributeStatement (only with attr.* parameters)
    Times are UTC, "YYYY-MM-DDThh:mm:ssZ". Signatures are enveloped XML-DSig
    made by xmlsec1: Reference URI="#<ID of the signed element>", transforms
    enveloped-signature + exclusive c14n
    (http://www.w3.org/2001/10/xml-exc-c14n#), CanonicalizationMethod
    exclusive c14n, SignatureMethod
    http://www.w3.org/2001/04/xmldsig-more#rsa-sha256, DigestMethod
    http://www.w3.org/2001/04/xmlenc#sha256, and ds:KeyInfo/ds:X509Data with
    the signing certificate. The SAMLResponse is the base64 (standard
    alphabet, no line breaks) of the UTF-8 XML document.

The HTML form
-------------
    <form method="post" action="ACS"> with exactly two hidden inputs,
    name="SAMLResponse" and name="RelayState" (value HTML-escaped; RelayState
    is the request's RelayState, or empty), and a body onload that submits it.

Variants (variant=...)
----------------------
Everything not mentioned is as for ``good``. A correct service provider must
accept ``good`` and refuse every other variant, except ``comment_nameid``
(see there: it must never yield the truncated address). EVIL below is the address
``evil@evil.test``; an "evil assertion" is a copy of the signed assertion
without its ds:Signature, with a fresh ID, with NameID EVIL and with every
AttributeValue equal to the user's email replaced by EVIL.

    good                 as above.
    tampered             after signing, the NameID text of the (signed)
                         assertion is replaced by EVIL.
    expired              Conditions NotBefore=now-20min,
                         NotOnOrAfter=now-10min; SubjectConfirmationData
                         NotOnOrAfter=now-10min; IssueInstants and
                         AuthnInstant now-20min.
    not_yet_valid        Conditions NotBefore=now+10min,
                         NotOnOrAfter=now+15min (SubjectConfirmationData
                         NotOnOrAfter=now+15min).
    wrong_audience       Audience is ``http://wrong-audience.test/sp``.
    wrong_recipient      Response/@Destination and
                         SubjectConfirmationData/@Recipient are
                         ``http://wrong-recipient.test/acs`` (the form still
                         posts to the real ACS).
    wrong_issuer         Response and Assertion Issuer are
                         ``http://wrong-issuer.test/metadata`` (still signed
                         with the IdP key).
    unsigned             no ds:Signature anywhere, whatever ``sign`` says.
    other_key            signed (as ``sign`` says) with the other key; the
                         other certificate is in ds:KeyInfo.
    sha1                 signatures use
                         http://www.w3.org/2000/09/xmldsig#rsa-sha1 and
                         http://www.w3.org/2000/09/xmldsig#sha1.
    status_failure       no assertion; Status has top StatusCode
                         ...:status:Responder with a nested StatusCode
                         ...:status:AuthnFailed and a StatusMessage. The
                         Response is signed when sign is both or response.
    dtd                  a good response, preceded (after the XML
                         declaration) by
                         <!DOCTYPE samlp:Response [<!ENTITY ent "dtd-entity">]>
                         (the entity is declared, not referenced; the
                         signatures stay valid).
    comment_nameid       an XML comment <!----> is put inside the NameID
                         BEFORE signing, splitting the email's domain before
                         its second "." (or before its only "." if it has
                         just one):
                           email=victim@example.com.evil.test gives
                           <saml:NameID ...>victim@example.com<!---->.evil.test</saml:NameID>
                           email=ada@example.com gives ada@example<!---->.com
                         Signed normally: the reference's exclusive c14n
                         (without comments) drops the comment, so the
                         signatures are valid and the true NameID value is
                         the whole email (victim@example.com.evil.test); an
                         SP that reads only the first text node sees
                         victim@example.com. A correct SP must not log in
                         victim@example.com (using the full text is correct).
    xsw_second_assertion
                         an evil assertion is inserted in the Response
                         BEFORE the signed one (two saml:Assertion children).
    xsw_second_assertion_after
                         the same, the evil assertion AFTER the signed one.
    xsw_extensions       the signed assertion is moved into a
                         samlp:Extensions element (placed after the
                         Response's Issuer/Signature); an evil assertion
                         takes its place as the Response's only direct
                         saml:Assertion child.
    xsw_advice           an evil assertion takes the signed one's place; the
                         signed assertion is moved into a saml:Advice
                         element of the evil assertion (after its
                         Conditions).
    xsw_duplicate_id     an evil assertion that has the SAME ID as the
                         signed assertion is inserted before it.
    For the xsw_* variants ``sign`` defaults to ``assertion``: the signed
    assertion's signature then stays valid and only the wrapping is wrong.
    With sign=both or sign=response the Response signature is broken by the
    manipulation as well.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime
import html
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import warnings

warnings.filterwarnings("ignore", module=r"saml2(\..*)?")
warnings.filterwarnings("ignore", message=r".*CFB has been moved.*")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_ENTITY
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary, pre_signature_part
from saml2.xmldsig import (
    DIGEST_SHA1,
    DIGEST_SHA256,
    SIG_RSA_SHA1,
    SIG_RSA_SHA256,
)

LOG = logging.getLogger("saml-idp")

NS = {
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
NSPAIR = {"samlp": NS["samlp"], "saml": NS["saml"], "ds": NS["ds"], "md": NS["md"]}
ASSERTION_NODE = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
RESPONSE_NODE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
NAME_FORMAT_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

EVIL_EMAIL = "evil@evil.test"
WRONG_AUDIENCE = "http://wrong-audience.test/sp"
WRONG_RECIPIENT = "http://wrong-recipient.test/acs"
WRONG_ISSUER = "http://wrong-issuer.test/metadata"

VARIANTS = (
    "good",
    "tampered",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_recipient",
    "wrong_issuer",
    "unsigned",
    "other_key",
    "sha1",
    "status_failure",
    "dtd",
    "comment_nameid",
    "xsw_second_assertion",
    "xsw_second_assertion_after",
    "xsw_extensions",
    "xsw_advice",
    "xsw_duplicate_id",
)
SIGN_MODES = ("both", "assertion", "response")


class BadRequest(Exception):
    """A client error, answered with 400 and the message."""


# --------------------------------------------------------------------------
# keys


def make_key_and_cert(directory: str, name: str, common_name: str) -> tuple[str, str, str]:
    """Write NAME.key / NAME.crt (PEM) and return (key path, cert path, cert base64 DER)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SAML test peer"),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, f"{name}.key")
    cert_path = os.path.join(directory, f"{name}.crt")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    der_b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")
    return key_path, cert_path, der_b64


# --------------------------------------------------------------------------
# helpers


def fmt_time(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def xml_parser() -> etree.XMLParser:
    # Our own output only; never resolve entities or touch the network.
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False, huge_tree=False)


def parse_xml(data: str | bytes) -> etree._Element:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return etree.fromstring(data, xml_parser())


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def q(ns: str, tag: str) -> str:
    return f"{{{NS[ns]}}}{tag}"


# --------------------------------------------------------------------------
# the identity provider


class IdentityProvider:
    def __init__(self, host: str, port: int, workdir: str):
        self.host = host
        self.port = port
        self.base = f"http://{host}:{port}"
        self.entity_id = f"{self.base}/metadata"
        self.sso_url = f"{self.base}/sso"
        self.workdir = workdir
        self.key_file, self.cert_file, self.cert_b64 = make_key_and_cert(workdir, "idp", "saml-test-idp")
        self.other_key_file, self.other_cert_file, self.other_cert_b64 = make_key_and_cert(
            workdir, "other", "saml-test-other"
        )
        self.lock = threading.Lock()
        self.known_sps: set[str] = set()
        conf = {
            "entityid": self.entity_id,
            "description": "SAML test identity provider",
            "xmlsec_binary": get_xmlsec_binary(),
            "key_file": self.key_file,
            "cert_file": self.cert_file,
            "metadata": {},
            "accepted_time_diff": 300,
            "delete_tmpfiles": True,
            "service": {
                "idp": {
                    "name": "SAML test identity provider",
                    "endpoints": {
                        "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)],
                    },
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "want_authn_requests_signed": False,
                    "sign_response": False,
                    "sign_assertion": False,
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_URI,
                        },
                    },
                },
            },
        }
        config = IdPConfig()
        config.load(conf)
        self.config = config
        self.server = Server(config=config)
        self.server.signing_algorithm = SIG_RSA_SHA256
        self.server.digest_algorithm = DIGEST_SHA256

    # ---- metadata

    def metadata(self, certs: str) -> bytes:
        with self.lock:
            ed = entity_descriptor(self.config)
            xml = ed.to_string(nspair=NSPAIR)
        root = parse_xml(xml)
        # pysaml2 advertises every algorithm xmlsec1 knows (md5...): drop it.
        for ext in root.findall(q("md", "Extensions")):
            root.remove(ext)
        idpsso = root.find(q("md", "IDPSSODescriptor"))
        kds = idpsso.findall(q("md", "KeyDescriptor"))
        for kd in kds:
            idpsso.remove(kd)
        if certs in ("1", "2"):
            cert_list = [self.cert_b64] + ([self.other_cert_b64] if certs == "2" else [])
            for pos, cert in enumerate(cert_list):
                kd = etree.Element(q("md", "KeyDescriptor"), nsmap={"md": NS["md"], "ds": NS["ds"]})
                kd.set("use", "signing")
                ki = etree.SubElement(kd, q("ds", "KeyInfo"))
                xd = etree.SubElement(ki, q("ds", "X509Data"))
                etree.SubElement(xd, q("ds", "X509Certificate")).text = cert
                idpsso.insert(pos, kd)
        elif certs != "0":
            raise BadRequest("certs must be 0, 1 or 2")
        etree.cleanup_namespaces(root)
        return serialize(root)

    # ---- requests

    def parse_request(self, saml_request: str) -> tuple[str, str, str | None]:
        """Return (request id, SP entity id, ACS URL or None)."""
        with self.lock:
            try:
                req = self.server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
            except Exception as exc:  # noqa: BLE001 - answered as 400
                raise BadRequest(f"cannot parse AuthnRequest: {type(exc).__name__}: {exc}") from exc
        if req is None:
            raise BadRequest("cannot parse AuthnRequest")
        msg = req.message
        if msg.issuer is None or not (msg.issuer.text or "").strip():
            raise BadRequest("AuthnRequest has no Issuer")
        return msg.id, msg.issuer.text.strip(), msg.assertion_consumer_service_url

    # ---- responses

    def build(
        self,
        *,
        in_response_to: str | None,
        acs: str,
        audience: str,
        email: str,
        attrs: list[tuple[str, list[str]]],
        sign: str,
        variant: str,
    ) -> bytes:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        minute = datetime.timedelta(minutes=1)
        issue = now
        not_before = now - minute
        not_on_or_after = now + 5 * minute
        if variant == "expired":
            issue = now - 20 * minute
            not_before = now - 20 * minute
            not_on_or_after = now - 10 * minute
        elif variant == "not_yet_valid":
            not_before = now + 10 * minute
            not_on_or_after = now + 15 * minute

        issuer = WRONG_ISSUER if variant == "wrong_issuer" else self.entity_id
        destination = WRONG_RECIPIENT if variant == "wrong_recipient" else acs
        if variant == "wrong_audience":
            audience = WRONG_AUDIENCE

        sign_assertion = sign in ("both", "assertion") and variant != "unsigned"
        sign_response = sign in ("both", "response") and variant != "unsigned"
        if variant == "sha1":
            sign_alg, digest_alg = SIG_RSA_SHA1, DIGEST_SHA1
        else:
            sign_alg, digest_alg = SIG_RSA_SHA256, DIGEST_SHA256
        if variant == "other_key":
            key_file, cert_b64 = self.other_key_file, self.other_cert_b64
        else:
            key_file, cert_b64 = self.key_file, self.cert_b64

        with self.lock:
            self._ensure_sp(audience, acs)
            if variant == "status_failure":
                response = self.server.create_error_response(
                    in_response_to,
                    destination,
                    (samlp.STATUS_AUTHN_FAILED, "Authentication failed"),
                    sign=False,
                    issuer=saml.Issuer(text=issuer, format=NAMEID_FORMAT_ENTITY),
                )
                response.issue_instant = fmt_time(issue)
                assertion = None
            else:
                name_id = saml.NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email)
                response = self.server.create_authn_response(
                    identity={},
                    in_response_to=in_response_to,
                    destination=destination,
                    sp_entity_id=audience,
                    name_id=name_id,
                    authn={"class_ref": PASSWORDPROTECTEDTRANSPORT, "authn_instant": 0},
                    issuer=saml.Issuer(text=issuer, format=NAMEID_FORMAT_ENTITY),
                    sign_response=False,
                    sign_assertion=False,
                )
                if isinstance(response, (str, list)):
                    raise RuntimeError(f"pysaml2 did not build a response: {response!r}")
                assertion = response.assertion
                if isinstance(assertion, list):
                    assertion = assertion[0]
                self._fix_assertion(
                    assertion,
                    issue=issue,
                    not_before=not_before,
                    not_on_or_after=not_on_or_after,
                    in_response_to=in_response_to,
                    recipient=destination,
                    audience=audience,
                    issuer=issuer,
                    attrs=attrs,
                )
                response.issue_instant = fmt_time(issue)
            if in_response_to is None:
                response.in_response_to = None

            if assertion is not None and sign_assertion:
                assertion.signature = pre_signature_part(
                    assertion.id, cert_b64, 2, sign_alg=sign_alg, digest_alg=digest_alg
                )
            if sign_response:
                response.signature = pre_signature_part(
                    response.id, cert_b64, 1, sign_alg=sign_alg, digest_alg=digest_alg
                )
            xml = response.to_string(nspair=NSPAIR)

        # Pre-signing manipulation (part of the signed content).
        if variant == "comment_nameid":
            root = parse_xml(xml)
            nid = root.find(f"{q('saml', 'Assertion')}/{q('saml', 'Subject')}/{q('saml', 'NameID')}")
            head, tail = split_for_comment(email)
            nid.text = head
            comment = etree.Comment("")
            comment.tail = tail
            nid.append(comment)
            xml = serialize(root)

        # Sign: the assertion first, then the Response around it.
        if assertion is not None and sign_assertion:
            xml = self.server.sec.sign_statement(xml, ASSERTION_NODE, key_file=key_file, node_id=assertion.id)
        if sign_response:
            xml = self.server.sec.sign_statement(xml, RESPONSE_NODE, key_file=key_file, node_id=response.id)

        root = parse_xml(xml)
        # Post-signing manipulations.
        if variant == "tampered":
            nid = root.find(f"{q('saml', 'Assertion')}/{q('saml', 'Subject')}/{q('saml', 'NameID')}")
            nid.text = EVIL_EMAIL
        elif variant.startswith("xsw_"):
            self._wrap(root, variant, email)
        out = serialize(root)
        if variant == "dtd":
            decl_end = out.index(b"?>") + 2 if out.startswith(b"<?xml") else 0
            doctype = b'\n<!DOCTYPE samlp:Response [<!ENTITY ent "dtd-entity">]>'
            out = out[:decl_end] + doctype + out[decl_end:]
        return out

    def _ensure_sp(self, sp_entity_id: str, acs: str) -> None:
        """pysaml2 looks the SP up in its metadata store (for encryption
        certificates). No SP metadata is needed in advance: the first time an
        SP entity id is seen, a minimal SPSSODescriptor (the ACS, no keys) is
        synthesized for it and loaded as inline metadata."""
        if sp_entity_id in self.known_sps:
            return
        ed = etree.Element(q("md", "EntityDescriptor"), nsmap={"md": NS["md"]})
        ed.set("entityID", sp_entity_id)
        sp = etree.SubElement(ed, q("md", "SPSSODescriptor"))
        sp.set("protocolSupportEnumeration", NS["samlp"])
        acs_el = etree.SubElement(sp, q("md", "AssertionConsumerService"))
        acs_el.set("Binding", BINDING_HTTP_POST)
        acs_el.set("Location", acs)
        acs_el.set("index", "0")
        self.server.metadata.load("inline", etree.tostring(ed, encoding="unicode"))
        self.known_sps.add(sp_entity_id)

    @staticmethod
    def _fix_assertion(assertion, *, issue, not_before, not_on_or_after, in_response_to, recipient,
                       audience, issuer, attrs):
        assertion.issue_instant = fmt_time(issue)
        assertion.issuer = saml.Issuer(text=issuer, format=NAMEID_FORMAT_ENTITY)
        cond = assertion.conditions
        cond.not_before = fmt_time(not_before)
        cond.not_on_or_after = fmt_time(not_on_or_after)
        cond.audience_restriction = [saml.AudienceRestriction(audience=[saml.Audience(text=audience)])]
        for sc in assertion.subject.subject_confirmation:
            scd = sc.subject_confirmation_data
            scd.not_on_or_after = fmt_time(not_on_or_after)
            scd.not_before = None
            scd.recipient = recipient
            scd.in_response_to = in_response_to
            scd.address = None
        for st in assertion.authn_statement:
            st.authn_instant = fmt_time(issue)
            st.session_not_on_or_after = None
        if attrs:
            assertion.attribute_statement = [
                saml.AttributeStatement(
                    attribute=[
                        saml.Attribute(
                            name=name,
                            name_format=NAME_FORMAT_URI if ":" in name else NAME_FORMAT_BASIC,
                            attribute_value=[saml.AttributeValue(text=v) for v in values],
                        )
                        for name, values in attrs
                    ]
                )
            ]
        else:
            assertion.attribute_statement = []

    @staticmethod
    def _wrap(root: etree._Element, variant: str, email: str) -> None:
        signed = root.find(q("saml", "Assertion"))
        if signed is None:
            raise RuntimeError("no assertion to wrap")
        evil = copy.deepcopy(signed)
        for sig in evil.findall(q("ds", "Signature")):
            evil.remove(sig)
        nid = evil.find(f"{q('saml', 'Subject')}/{q('saml', 'NameID')}")
        for child in list(nid):
            nid.remove(child)
        nid.text = EVIL_EMAIL
        for av in evil.iter(q("saml", "AttributeValue")):
            if av.text == email:
                av.text = EVIL_EMAIL
        if variant != "xsw_duplicate_id":
            evil.set("ID", "_evil" + signed.get("ID").replace("id-", "", 1))

        if variant in ("xsw_second_assertion", "xsw_duplicate_id"):
            signed.addprevious(evil)
        elif variant == "xsw_second_assertion_after":
            signed.addnext(evil)
        elif variant == "xsw_extensions":
            signed.addprevious(evil)
            ext = etree.Element(q("samlp", "Extensions"), nsmap={"samlp": NS["samlp"]})
            # Extensions follow Issuer and Signature, precede Status.
            status = root.find(q("samlp", "Status"))
            status.addprevious(ext)
            ext.append(signed)  # moves it
        elif variant == "xsw_advice":
            signed.addprevious(evil)
            advice = etree.Element(q("saml", "Advice"), nsmap={"saml": NS["saml"]})
            evil.find(q("saml", "Conditions")).addnext(advice)
            advice.append(signed)  # moves it
        else:
            raise BadRequest(f"unknown variant {variant}")


def split_for_comment(email: str) -> tuple[str, str]:
    """Where comment_nameid puts the comment: before the domain's second "."
    (or its only "."). Returns (text before the comment, text after it)."""
    local, at, domain = email.rpartition("@")
    if not at:
        raise BadRequest("comment_nameid needs an email with '@'")
    dots = [i for i, c in enumerate(domain) if c == "."]
    if len(dots) >= 2:
        cut = dots[1]
    elif dots:
        cut = dots[0]
    else:
        raise BadRequest("comment_nameid needs a domain with '.'")
    prefix = local + at
    return prefix + domain[:cut], domain[cut:]


def post_form(acs: str, saml_response: bytes, relay_state: str) -> bytes:
    b64 = base64.b64encode(saml_response).decode("ascii")
    page = (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8"><title>SAML POST</title></head>\n'
        '<body onload="document.forms[0].submit()">\n'
        f'<form method="post" action="{html.escape(acs, quote=True)}">\n'
        f'<input type="hidden" name="SAMLResponse" value="{b64}"/>\n'
        f'<input type="hidden" name="RelayState" value="{html.escape(relay_state, quote=True)}"/>\n'
        '<noscript><button type="submit">Continue</button></noscript>\n'
        "</form>\n</body></html>\n"
    )
    return page.encode("utf-8")


# --------------------------------------------------------------------------
# HTTP


class Handler(BaseHTTPRequestHandler):
    server_version = "saml-test-idp/1"
    protocol_version = "HTTP/1.1"
    idp: IdentityProvider  # set on the class at start

    def log_message(self, fmt, *args):  # to stderr, via logging
        LOG.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        try:
            if url.path == "/health":
                self._send(200, "text/plain; charset=utf-8", b"ok")
            elif url.path == "/metadata":
                certs = first(params, "certs") or "1"
                self._send(200, "application/samlmetadata+xml", self.idp.metadata(certs))
            elif url.path == "/cert":
                which = first(params, "which") or "idp"
                if which not in ("idp", "other"):
                    raise BadRequest("which must be idp or other")
                path = self.idp.cert_file if which == "idp" else self.idp.other_cert_file
                with open(path, "rb") as f:
                    self._send(200, "application/x-pem-file", f.read())
            elif url.path == "/sso":
                self._sso(params)
            elif url.path == "/start":
                self._start(params)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found")
        except BadRequest as exc:
            LOG.info("400: %s", exc)
            self._send(400, "text/plain; charset=utf-8", str(exc).encode("utf-8"))
        except Exception as exc:  # noqa: BLE001
            LOG.error("500: %s", traceback.format_exc())
            self._send(500, "text/plain; charset=utf-8", f"{type(exc).__name__}: {exc}".encode("utf-8"))

    do_HEAD = do_GET

    def _common(self, params, default_sign="both"):
        email = first(params, "email")
        if not email:
            raise BadRequest("email is required")
        variant = first(params, "variant") or "good"
        if variant not in VARIANTS:
            raise BadRequest(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        sign = first(params, "sign")
        if not sign:
            sign = "assertion" if variant.startswith("xsw_") else default_sign
        if sign not in SIGN_MODES:
            raise BadRequest("sign must be both, assertion or response")
        attrs: dict[str, list[str]] = {}
        for k, v in params:
            if k.startswith("attr."):
                name = k[len("attr."):]
                if not name:
                    raise BadRequest("empty attribute name")
                attrs.setdefault(name, []).append(v)
        raw = first(params, "raw") in ("1", "true")
        return email, variant, sign, list(attrs.items()), raw

    def _answer(self, acs, xml, relay_state, raw):
        if raw:
            self._send(200, "application/xml", xml)
        else:
            self._send(200, "text/html; charset=utf-8", post_form(acs, xml, relay_state))

    def _sso(self, params):
        saml_request = first(params, "SAMLRequest")
        if not saml_request:
            raise BadRequest("SAMLRequest is required")
        email, variant, sign, attrs, raw = self._common(params)
        req_id, sp, acs = self.idp.parse_request(saml_request)
        acs = acs or first(params, "acs")
        if not acs:
            raise BadRequest("AuthnRequest has no AssertionConsumerServiceURL and no acs parameter was given")
        xml = self.idp.build(
            in_response_to=req_id, acs=acs, audience=sp, email=email, attrs=attrs, sign=sign, variant=variant
        )
        self._answer(acs, xml, first(params, "RelayState") or "", raw)

    def _start(self, params):
        sp = first(params, "sp")
        acs = first(params, "acs")
        if not sp or not acs:
            raise BadRequest("sp and acs are required")
        email, variant, sign, attrs, raw = self._common(params)
        xml = self.idp.build(
            in_response_to=None, acs=acs, audience=sp, email=email, attrs=attrs, sign=sign, variant=variant
        )
        self._answer(acs, xml, first(params, "RelayState") or "", raw)


def first(params: list[tuple[str, str]], name: str) -> str | None:
    for k, v in params:
        if k == name:
            return v
    return None


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="SAML 2.0 test identity provider")
    ap.add_argument("--port", type=int, required=True, help="TCP port (0: pick a free one)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind, also used in URLs")
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="saml-idp: %(message)s")
    logging.getLogger("saml2").setLevel(logging.WARNING)

    httpd = HTTPServer((args.host, args.port), Handler)
    port = httpd.server_address[1]
    workdir = tempfile.mkdtemp(prefix="saml-idp-")
    try:
        Handler.idp = IdentityProvider(args.host, port, workdir)

        def stop(signum, _frame):
            LOG.info("signal %d: stopping", signum)
            threading.Thread(target=httpd.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        sys.stdout.write(f"READY {port}\n")
        sys.stdout.flush()
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
