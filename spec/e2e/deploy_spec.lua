-- deploy/: the manifests are valid YAML (yamllint), the Kubernetes Job's
-- project (its ConfigMap) runs as a pod would run it (the completion index
-- through the environment into a label and params), the systemd unit
-- passes systemd-analyze.  The deploy/sql queries run against a fleet's
-- data in spec/e2e/fleet_spec.lua.
local h = require "helper"
local cjson = require "cjson"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local s = p:read("a")
  local ok = p:close()
  return ok, s
end

describe("deploy/", function()
  local dir
  setup(function() dir = h.tmpdir() end)
  teardown(function() h.rm(dir) end)

  it("has Kubernetes manifests yamllint accepts", function()
    local ok, out = sh(("cd %s && yamllint -s -c deploy/.yamllint deploy/kubernetes"):format(h.q(h.root)))
    assert.is_true(ok, out)
  end)

  it("runs the Job's project as a pod of index 3 would", function()
    -- the ConfigMap's files at the paths job.yaml mounts them, and the
    -- container's environment with $(VAR) expanded as the kubelet does
    local py = [==[
import sys, yaml, os, json
root, out = sys.argv[1], sys.argv[2]
cm = yaml.safe_load(open(root + "/deploy/kubernetes/configmap.yaml"))
job = yaml.safe_load(open(root + "/deploy/kubernetes/job.yaml"))
spec = job["spec"]
assert spec["completionMode"] == "Indexed", spec
pod = spec["template"]["spec"]
c = pod["containers"][0]
vol = [v for v in pod["volumes"] if v["name"] == "project"][0]
for item in vol["configMap"]["items"]:
    p = os.path.join(out, item["path"])
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "w").write(cm["data"][item["key"]])
env = {}
for e in c["env"]:
    if "value" in e:
        v = e["value"]
        for k, x in env.items():
            v = v.replace("$(" + k + ")", x)
        env[e["name"]] = v
    elif e["name"] == "DEVICE_INDEX":
        env["DEVICE_INDEX"] = "3"
print(json.dumps({"env": env, "args": c["args"]}))
]==]
    h.write(dir .. "/extract.py", py)
    local ok, out = sh(("python3 %s %s %s"):format(h.q(dir .. "/extract.py"), h.q(h.root), h.q(dir .. "/project")))
    assert.is_true(ok, out)
    local job = cjson.decode(out)
    assert.are.equal("run", job.args[1])
    local env = {}
    for k, v in pairs(job.env) do
      if k:match("^ORCHLUA_") then env[#env + 1] = k .. "=" .. h.q(v) end
    end
    table.sort(env)
    local code, o, e = h.run("check " .. job.args[2], dir .. "/project", table.concat(env, " "))
    assert.are.equal(0, code, (o or "") .. (e or ""))
    local _
    code, _, e = h.run(("run %s -q --hours 0.0001 --report %s"):format(job.args[2], h.q(dir .. "/r.jsonl")),
      dir .. "/project", table.concat(env, " "))
    assert.are.equal(0, code, e)
    local rs = h.jsonl(dir .. "/r.jsonl")[1]
    assert.are.same({ device = "dev-3", job = "orchlua-soak" }, rs.labels)
    assert.are.same({ device = "dev-3", device_index = 3 }, rs.params.probe)
  end)

  it("has a systemd template unit systemd-analyze verifies", function()
    local unit = h.read(h.root .. "/deploy/systemd/orchlua@.service")
    assert.matches("%-%-label device=%%i", unit)
    h.write(dir .. "/units/orchlua@.service", (unit:gsub("/usr/local/bin/orchlua", h.bin)))
    local ok, out = sh(("systemd-analyze verify %s"):format(h.q(dir .. "/units/orchlua@dev-3.service")))
    assert.is_true(ok, out)
    assert.are.equal("", out)
  end)

  it("has a Nomad batch job mapping the allocation index to the device", function()
    local job = h.read(h.root .. "/deploy/nomad/orchlua.nomad.hcl")
    assert.matches('type%s*=%s*"batch"', job)
    assert.matches('ORCHLUA_LABEL_DEVICE%s*=%s*"dev%-%${NOMAD_ALLOC_INDEX}"', job)
  end)
end)
