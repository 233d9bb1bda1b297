"""``MeshdexSyncAdmin`` over gRPC: the servicer (inside ``meshdex serve``) and the client
(``meshdex --node``). Both thin: decode, call ``SyncAdmin``, encode; the node's bearer-token
interceptor guards every call (scopes in ``meshdex.node.auth``).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from meshdex.index.params import BuildParams
from meshdex.node import wire as node_wire
from meshdex.node.client import MeshdexClient
from meshdex.node.grpc_errors import error_from_rpc
from meshdex.node.indexing import BuildProgress
from meshdex.node.records import Conflict, PeerStatus
from meshdex.node.servicer import stream_build
from meshdex.node.wire import peer_status_from_wire, peer_status_to_wire
from meshdex.proto.meshdex.v1 import node_pb2, sync_pb2_grpc
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.sync.admin import CreatedInvite, SyncAdmin
from meshdex.sync.admin_wire import session_report_from_wire, session_report_to_wire
from meshdex.sync.client import SessionReport
from meshdex.sync.errors import SyncError
from meshdex.sync.remote_build import RemoteBuildReport
from meshdex.sync.wire import conflict_from_wire, conflict_to_wire

ADMIN_CALL_TIMEOUT_S = 3600.0  # SyncNow runs whole sessions, BuildOn a peer's whole build


class SyncAdminServicer(sync_pb2_grpc.MeshdexSyncAdminServicer):
    def __init__(self, admin: SyncAdmin) -> None:
        self.admin = admin

    def Identity(self, request, context) -> pb.IdentityResponse:
        return pb.IdentityResponse(device_id=self.admin.device_id())

    def CreateInvite(self, request, context) -> pb.CreateInviteResponse:
        invite = self.admin.create_invite(collections=tuple(request.collections),
                                          read_only=request.read_only, ttl_s=request.ttl_s)
        return pb.CreateInviteResponse(token=invite.token, expires_at=invite.expires_at,
                                       collections=invite.collections,
                                       read_only=invite.read_only)

    def Join(self, request, context) -> pb.PeerInfo:
        return peer_status_to_wire(self.admin.join(request.token, name=request.name or None))

    def AddPeer(self, request, context) -> pb.PeerInfo:
        return peer_status_to_wire(self.admin.add_peer(
            request.device_id, request.address, collections=tuple(request.collections),
            read_only=request.read_only, name=request.name))

    def RemovePeer(self, request, context) -> pb.PeerInfo:
        return peer_status_to_wire(self.admin.remove_peer(request.device_id))

    def ForgetUnpaired(self, request, context) -> pb.ForgetUnpairedResponse:
        return pb.ForgetUnpairedResponse(
            store_ids=self.admin.forget_unpaired(dry_run=request.dry_run))

    def ShareCollections(self, request, context) -> pb.PeerInfo:
        return peer_status_to_wire(self.admin.share(request.device_id,
                                                    tuple(request.collections)))

    def UnshareCollections(self, request, context) -> pb.PeerInfo:
        return peer_status_to_wire(self.admin.unshare(request.device_id,
                                                      tuple(request.collections)))

    def ListPeers(self, request, context) -> pb.ListPeersResponse:
        return pb.ListPeersResponse(peers=[peer_status_to_wire(p) for p in self.admin.peers()])

    def SyncNow(self, request, context) -> pb.SyncNowResponse:
        reports = self.admin.sync_now(request.device_id or None)
        return pb.SyncNowResponse(reports=[session_report_to_wire(r) for r in reports])

    def ListConflicts(self, request, context) -> pb.ListConflictsResponse:
        records = self.admin.conflicts(request.collection or None)
        return pb.ListConflictsResponse(conflicts=[conflict_to_wire(c) for c in records])

    def BuildOn(self, request, context) -> Iterator[node_pb2.BuildProgress]:
        call = node_wire.build_request_from_wire(request.build)
        peer = node_wire.require(request.peer, "peer")
        return stream_build(
            lambda progress: self.admin.build_on(peer, call.collection, params=call.params,
                                                 rebuild=call.rebuild, progress=progress),
            context, name=f"build-on-{call.collection}")


def add_admin_service(server: grpc.Server, admin: SyncAdmin) -> None:
    sync_pb2_grpc.add_MeshdexSyncAdminServicer_to_server(SyncAdminServicer(admin), server)


class SyncAdminClient:
    """``SyncAdmin`` through a serving node, reusing ``MeshdexClient``'s channel, token and
    error mapping."""

    def __init__(self, client: MeshdexClient) -> None:
        self.client = client
        self.stub = sync_pb2_grpc.MeshdexSyncAdminStub(client.channel)

    def _call(self, method: str, request):
        return self.client.call_stub(getattr(self.stub, method), request,
                                     timeout_s=ADMIN_CALL_TIMEOUT_S)

    def device_id(self) -> str:
        return self._call("Identity", pb.IdentityRequest()).device_id

    def create_invite(self, *, collections: tuple[str, ...], read_only: bool,
                      ttl_s: float) -> CreatedInvite:
        response = self._call("CreateInvite", pb.CreateInviteRequest(
            collections=collections, read_only=read_only, ttl_s=ttl_s))
        return CreatedInvite(token=response.token, expires_at=response.expires_at,
                             collections=tuple(response.collections),
                             read_only=response.read_only)

    def join(self, token: str, *, name: str | None) -> PeerStatus:
        return peer_status_from_wire(self._call("Join", pb.JoinRequest(token=token,
                                                                       name=name or "")))

    def add_peer(self, device_id: str, address: str, *, collections: tuple[str, ...],
                 read_only: bool, name: str) -> PeerStatus:
        return peer_status_from_wire(self._call("AddPeer", pb.AddPeerRequest(
            device_id=device_id, address=address, collections=collections,
            read_only=read_only, name=name)))

    def remove_peer(self, peer: str) -> PeerStatus:
        return peer_status_from_wire(self._call("RemovePeer",
                                                pb.RemovePeerRequest(device_id=peer)))

    def forget_unpaired(self, *, dry_run: bool = False) -> list[str]:
        return list(self._call("ForgetUnpaired",
                               pb.ForgetUnpairedRequest(dry_run=dry_run)).store_ids)

    def share(self, peer: str, collections: tuple[str, ...]) -> PeerStatus:
        return peer_status_from_wire(self._call("ShareCollections", pb.PeerCollectionsRequest(
            device_id=peer, collections=collections)))

    def unshare(self, peer: str, collections: tuple[str, ...]) -> PeerStatus:
        return peer_status_from_wire(self._call("UnshareCollections", pb.PeerCollectionsRequest(
            device_id=peer, collections=collections)))

    def peers(self) -> list[PeerStatus]:
        return [peer_status_from_wire(p)
                for p in self._call("ListPeers", pb.ListPeersRequest()).peers]

    def collection_names(self) -> list[str]:
        return sorted(c.name for c in self.client.list_collections())

    def sync_now(self, peer: str | None, *,
                 progress: BuildProgress | None = None) -> list[SessionReport]:
        # The serving node builds what its sessions bring in the background: no progress.
        response = self._call("SyncNow", pb.SyncNowRequest(device_id=peer or ""))
        return [session_report_from_wire(r) for r in response.reports]

    def conflicts(self, collection: str | None) -> list[Conflict]:
        response = self._call("ListConflicts",
                              pb.ListConflictsRequest(collection=collection or ""))
        return [conflict_from_wire(c) for c in response.conflicts]

    def device_names(self) -> dict[str, str]:
        return {}  # the admin API carries no store ids: conflicts name short ids

    def build_on(self, peer: str, collection: str, *, params: BuildParams | None,
                 rebuild: bool, progress: BuildProgress | None) -> RemoteBuildReport:
        build = node_pb2.BuildRequest(collection=collection, rebuild=rebuild,
                                      params_json=node_wire.to_json(params.to_dict())
                                      if params else "")
        updates = self._call("BuildOn", pb.BuildOnRequest(peer=peer, build=build))
        try:
            for update in updates:
                if update.done:
                    return RemoteBuildReport.from_dict(
                        node_wire.json_object(update.summary_json, "summary_json"))
                if progress is not None:
                    progress(update.stage, update.done_items, update.total_items)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        raise SyncError("the node's build stream ended without a result",
                        hint="the node may have shut down; run it again")
