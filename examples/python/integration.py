# A tracker plugin in a few lines: register a push source, send its items
# with labels, link them to hypotheses, close one, read the ranking.
# Stubs: mkdir -p gen && python -m grpc_tools.protoc -I proto --python_out=gen \
#   --grpc_python_out=gen proto/plumbline/v1/*.proto; run with PYTHONPATH=gen.
import os

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from plumbline.v1 import backlog_pb2 as bl, backlog_pb2_grpc
from plumbline.v1 import scoring_pb2, scoring_pb2_grpc
from plumbline.v1 import source_pb2, source_pb2_grpc

server = os.environ.get("PLUMBLINE_SERVER", "http://127.0.0.1:50051")
channel = grpc.insecure_channel(server.removeprefix("http://"))
token = os.environ.get("PLUMBLINE_TOKEN")  # with [auth]: an admin token
auth = [("authorization", f"Bearer {token}")] if token else []

sources = source_pb2_grpc.SourceServiceStub(channel)
try:
    sources.CreateSource(source_pb2.CreateSourceRequest(source=source_pb2.Source(
        id="roadmap", kind=source_pb2.TRACKER_KIND_PUSH)), metadata=auth)
except grpc.RpcError as e:  # registered by an earlier run
    if e.code() != grpc.StatusCode.ALREADY_EXISTS:
        raise

backlog = backlog_pb2_grpc.BacklogServiceStub(channel)
backlog.UpsertItems(bl.UpsertItemsRequest(items=[
    # The label links this item to H-1 by the source's link rule.
    bl.Item(source_id="roadmap", external_id="R-1", title="One-tap reorder",
            labels=["mobile", "hypothesis:H-1"], estimate=3),
    bl.Item(source_id="roadmap", external_id="R-2", title="Wallet buttons",
            labels=["payments"], estimate=5),
    bl.Item(source_id="roadmap", external_id="R-3", title="Old banner",
            labels=["web"], estimate=1),
]), metadata=auth)
backlog.LinkItem(bl.LinkItemRequest(item_key="roadmap/R-2", hypothesis_id="H-2",
                                    contribution=0.5), metadata=auth)
# Close R-3 without sending it again: only the fields in the mask change.
backlog.UpsertItems(bl.UpsertItemsRequest(
    items=[bl.Item(source_id="roadmap", external_id="R-3", state=bl.ITEM_STATE_CLOSED)],
    update_mask=FieldMask(paths=["state"])), metadata=auth)

scoring = scoring_pb2_grpc.ScoringServiceStub(channel)
ranking = scoring.RankItems(scoring_pb2.RankItemsRequest(
    source_id="roadmap", page_size=10), metadata=auth)
for r in ranking.items:
    print(f"{r.rank}. {r.score.item_key} value/size {r.score.value_density:.3f} {r.score.title}")
