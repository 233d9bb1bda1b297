"""Pairing through real invites over real TLS: success, and every way an invite is refused.

Refusals come back over gRPC, so the joiner sees them as their kind (PermissionDenied,
ResourceExhausted) with the inviter's message.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from meshdex.index.errors import PermissionDenied, ResourceExhausted
from meshdex.node.cli.main import cli
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync.client import join, run_session
from meshdex.sync.device_id import DeviceId
from meshdex.sync.errors import InvalidInvite, PeerExists, PeerIdentityMismatch
from meshdex.sync.identity import load_identity
from meshdex.sync.pairing import MAX_FAILED_PAIRINGS, InviteToken
from meshdex.sync.transport import fetch_certificate, pinned_channel
from meshdex.sync.trust import TrustStore
from sync_support import pair, start_sync_node, stop_sync_node


@pytest.fixture
def nodes(tmp_path: Path):
    started = [start_sync_node(tmp_path, name) for name in ("a", "b")]
    yield started
    for node in started:
        stop_sync_node(node)


def _peers(node) -> list[str]:
    return [p.device_id for p in TrustStore(node.node.data_dir).all()]


def test_join_records_both_sides_with_collections_and_mode(nodes) -> None:
    a, b = nodes
    inviter = pair(a, b, ("notes", "papers"), read_only=True)
    assert inviter.device_id == a.device_id and inviter.collections == ("notes", "papers")
    assert inviter.mode == "read-write"  # b accepts a's changes
    joined = TrustStore(a.node.data_dir).get(b.device_id)
    assert joined.collections == ("notes", "papers") and joined.mode == "read-only"
    assert joined.addresses == (b.sync_address,)
    assert inviter.addresses == (a.sync_address,)


def test_a_read_only_pairing_is_shown_on_the_side_held_read_only(nodes) -> None:
    """b joined a read-only invite: a takes none of b's changes. b's join, peers, status and
    sync say so, where peers said 'lag 1', 'lag 2', ... growing forever."""
    a, b = nodes
    a.add("notes", {"n1": "from a"})
    joined = CliRunner().invoke(cli, ["--data-dir", str(b.node.data_dir), "join",
                                      a.invite(read_only=True)])
    assert joined.exit_code == 0, joined.output
    assert "takes none of this device's" in joined.output
    b.add("notes", {"n2": "written on the read-only side"})
    report = run_session(b.service.engine, b.service.identity, b.service.trust,
                         b.service.trust.get(a.device_id))
    assert report.error is None and report.held_read_only
    assert b.texts("notes") == {"n1": "from a", "n2": "written on the read-only side"}
    for command in ("peers", "status"):
        shown = subprocess.run([sys.executable, "-m", "meshdex", "--data-dir",
                                str(b.node.data_dir), command], capture_output=True, text=True,
                               timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert "receives nothing from here (it holds this device read-only)" in shown.stdout
        assert "lag" not in shown.stdout
    listed = subprocess.run([sys.executable, "-m", "meshdex", "--data-dir",
                             str(b.node.data_dir), "peers", "--json"], capture_output=True,
                            text=True, timeout=120, check=True)
    [peer] = json.loads(listed.stdout)
    assert (peer["held_read_only"], peer["lag"]) == (True, None)
    # and the side that holds it: a's record of b is read-only, b's changes never arrived
    assert not TrustStore(a.node.data_dir).get(b.device_id).held_read_only
    assert a.texts("notes") == {"n1": "from a"}


def _refused_and_nothing_recorded(a, joiner, token: str, error: type, match: str) -> None:
    before = (_peers(a), _peers(joiner))
    with pytest.raises(error, match=match):
        join(joiner.node.data_dir, token, addresses=(joiner.sync_address,))
    assert (_peers(a), _peers(joiner)) == before


def test_a_used_invite_is_refused(nodes, tmp_path: Path) -> None:
    a, b = nodes
    token = a.invite()
    join(b.node.data_dir, token)
    c = start_sync_node(tmp_path, "c")
    try:
        _refused_and_nothing_recorded(a, c, token, PermissionDenied, "already used")
    finally:
        stop_sync_node(c)


def test_an_expired_invite_is_refused(nodes) -> None:
    a, b = nodes
    token = a.invite(ttl_s=0.2)
    time.sleep(0.4)
    _refused_and_nothing_recorded(a, b, token, PermissionDenied, "expired")


def _with(token: str, **changes) -> str:
    body = json.loads(base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4)))
    body.update(changes)
    return InviteToken.decode("mdxi_" + base64.urlsafe_b64encode(
        json.dumps(body).encode()).decode().rstrip("=")).encode()


def test_a_forged_secret_is_refused_and_the_real_invite_still_works(nodes) -> None:
    a, b = nodes
    token = a.invite()
    forged = _with(token, s=base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("="))
    _refused_and_nothing_recorded(a, b, forged, PermissionDenied, "secret does not match")
    assert join(b.node.data_dir, token).device_id == a.device_id


def test_an_unknown_invite_id_is_refused(nodes) -> None:
    a, b = nodes
    _refused_and_nothing_recorded(a, b, _with(a.invite(), i="0" * 16), PermissionDenied,
                                  "no such invite")


def test_a_token_naming_another_device_is_refused_before_any_call(nodes, tmp_path) -> None:
    a, b = nodes
    impostor = str(load_identity(tmp_path / "elsewhere").device_id)
    _refused_and_nothing_recorded(a, b, _with(a.invite(), d=impostor), PeerIdentityMismatch,
                                  "is not")


def test_pairing_twice_is_refused(nodes) -> None:
    a, b = nodes
    pair(a, b)
    with pytest.raises(PeerExists):
        join(b.node.data_dir, a.invite())


def test_failed_attempts_are_rate_limited(nodes) -> None:
    a, b = nodes
    good = a.invite()
    forged = _with(good, s=base64.urlsafe_b64encode(b"y" * 32).decode().rstrip("="))
    for _ in range(MAX_FAILED_PAIRINGS):
        with pytest.raises(PermissionDenied):
            join(b.node.data_dir, forged)
    with pytest.raises(ResourceExhausted, match="too many failed pairing attempts"):
        join(b.node.data_dir, good)  # even the right secret waits out the window
    assert _peers(a) == [] and _peers(b) == []


@pytest.mark.parametrize(("text", "message"), [
    ("", "should start with mdxi_"),
    ("mdx_1234_abcd", "should start with mdxi_"),
    ("mdxi_!!!!", "damaged"),
    ("mdxi_eyJ2IjoxfQ", "damaged"),
])
def test_malformed_tokens_are_rejected_clearly(text: str, message: str) -> None:
    with pytest.raises(InvalidInvite, match=message):
        InviteToken.decode(text)


def test_the_pairing_port_serves_only_pairing_and_the_sync_port_never_pairs(nodes) -> None:
    a, b = nodes
    pem = fetch_certificate(a.pair_address, DeviceId.parse(a.device_id))
    with pinned_channel(a.pair_address, pem, identity=None) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            sync_pb2_grpc.MeshdexSyncStub(channel).Hello(pb.HelloRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not served on the pairing port" in refused.value.details()
    pair(a, b)
    identity = load_identity(b.node.data_dir)
    with pinned_channel(a.sync_address, pem, identity=identity) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            sync_pb2_grpc.MeshdexSyncStub(channel).PairChallenge(
                pb.PairChallengeRequest(invite_id="x"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
