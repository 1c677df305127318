#!/bin/bash
# Create the volume, the chain and the shard Job; when every index has completed, run the merge.
set -euo pipefail
here=$(dirname "$0")
python3 - "$here/aicp-indexed-job.yaml" > /tmp/aicp-shards.yaml <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d["metadata"]["name"] != "aicp-merge"]
print(yaml.safe_dump_all(docs))
PY
kubectl apply -f /tmp/aicp-shards.yaml
kubectl wait --for=condition=complete --timeout=24h job/aicp-shards
python3 - "$here/aicp-indexed-job.yaml" <<'PY' | kubectl apply -f -
import sys, yaml
print(yaml.safe_dump(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d["metadata"]["name"] == "aicp-merge")))
PY
kubectl wait --for=condition=complete --timeout=1h job/aicp-merge
