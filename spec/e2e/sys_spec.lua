-- End-to-end specs of orch.sys (figures from /proc) and of the
-- sample_process event of events/sample.lua.
local H = require "helper"
local U = require "e2e.fixtures.process.util"

local function run(events, sec, sources)
  local dir = U.project({ t = U.desc("t", sec / 3600, events) }, { sources = sources })
  local code, out, err, recs = U.run(dir, "t")
  H.rm(dir)
  return code, out, err, recs
end

local function near(want, got, tol, what)
  assert.is_number(got, what)
  assert.is_true(math.abs(want - got) <= tol, ("%s: want %s, got %s (tolerance %s)"):format(what, want, got, tol))
end

describe("orch.sys", function()
  describe("machine figures", function()
    local d, err
    setup(function()
      local code, _
      code, _, err, d = run({ { name = "sys_machine" } }, 0.5)
      assert.equal(0, code)
      d = U.result(d, "machine")
    end)

    it("memory: total and available as /proc/meminfo says, in bytes", function()
      assert.equal(d.meminfo.total, d.mem.total)
      near(d.meminfo.available, d.mem.available, d.meminfo.total * 0.02, "available")
      near(d.meminfo.free, d.mem.free, d.meminfo.total * 0.02, "free")
      assert.equal(d.mem.total - d.mem.available, d.mem.used)
      near(d.mem.used * 100 / d.mem.total, d.mem.percent, 0.001, "percent")
    end)

    it("load average: the three figures of /proc/loadavg", function()
      for i = 1, 3 do near(d.loadavg[i], d.load[i], 0.5, "load " .. i) end
    end)

    it("CPU times: cumulative seconds from /proc/stat, and the CPU count", function()
      local hz = 100
      near(d.stat_total_ticks / hz, d.times.total, 2 * (d.ncpu_proc), "total seconds")
      assert.equal(d.ncpu_proc, d.times.ncpu)
      near(d.times.total - d.times.idle - d.times.iowait, d.times.busy, 1e-6, "busy")
      assert.is_true(d.since_boot.percent >= 0 and d.since_boot.percent <= 100)
      assert.equal(0, d.since_boot.interval)
    end)

    it("knows orchlua's own pid", function()
      assert.equal(tonumber(d.stat_self), d.pid)
    end)

    it("leaves nothing behind", function()
      assert.same({ handles = 0, tasks = 0, refs = 0 }, U.stats(err))
    end)
  end)

  describe("process figures", function()
    local d, err
    setup(function()
      local code, recs, _
      code, _, err, recs = run({ { name = "sys_process" } }, 3)
      assert.equal(0, code)
      d = U.result(recs, "process")
    end)

    it("takes a spawned process or its pid", function()
      assert.equal(d.pid, d.by_process.pid)
      assert.equal(d.pid, d.by_pid.pid)
      assert.equal("sleep", d.by_process.name)
      assert.equal("S", d.by_process.state)
      assert.equal(d.orchlua_pid, d.by_process.ppid)
    end)

    it("RSS, threads and open file descriptors as /proc says", function()
      assert.equal(d.status.rss, d.by_process.rss)
      assert.equal(d.status.threads, d.by_process.threads)
      assert.equal(1, d.by_process.threads)
      assert.equal(d.fds, d.by_process.fds)
      assert.equal(d.fat_fds, d.fat.fds)
      assert.equal(3, d.by_process.fds, "a spawned process inherits stdin, stdout and stderr only")
      assert.equal(d.by_process.fds + 3, d.fat.fds)
      assert.is_true(d.by_process.vms >= d.by_process.rss)
    end)

    it("CPU percent: near 0 for a sleeper over its life, a busy loop's share over an interval as /proc counts it", function()
      assert.is_true(d.by_process.cpu_percent < 20, "sleep: " .. d.by_process.cpu_percent)
      assert.is_true(d.busy.interval >= 0.49 and d.busy.interval < 5, "interval (real seconds): " .. d.busy.interval)
      -- a loaded machine gives the loop any share: the figure must agree
      -- with /proc's ticks over the same time (10 ms ticks; the spec's
      -- reads frame the interval, a little wider)
      assert.is_true(d.busy.cpu_percent > 0 and d.busy.cpu_percent <= 105, "busy loop: " .. d.busy.cpu_percent)
      near(d.busy_proc_percent, d.busy.cpu_percent, 15, "busy loop against /proc")
      assert.is_true(d.busy.cpu_time > 0)
    end)

    it("whole-machine CPU use over an interval", function()
      local m = d.machine
      assert.is_true(m.interval >= 0.49 and m.interval < 5, "interval (real seconds): " .. m.interval)
      assert.is_true(m.percent >= 100 / m.ncpu * 0.5 and m.percent <= 100.5,
                     ("a busy loop on %d CPUs: %s%%"):format(m.ncpu, m.percent))
      near(100, m.user + m.system + m.iowait + m.idle + m.steal, 1.5, "the parts add up")
    end)

    it("nil and a message for a process that does not exist, or exits during the interval", function()
      assert.same({ nil, ("no such process: %d"):format(d.pid) }, d.gone)
      assert.is_table(d.gone_timed[1])  -- not gone yet then: an interval of 0 does not wait
      assert.is_nil(d.gone_in_interval[1])
      assert.matches("^no such process: %d+$", d.gone_in_interval[2])
    end)

    it("raises on misuse", function()
      assert.same({ false, "bad argument #1 to 'orch.sys.process' (pid or process expected, got string)" }, d.bad)
      assert.same({ false, "bad argument #2 to 'orch.sys.process' (interval must be >= 0 seconds)" }, d.bad_interval)
    end)

    it("leaves nothing behind", function()
      assert.same({ handles = 0, tasks = 0, refs = 0 }, U.stats(err))
    end)
  end)
end)

describe("sample_process (events/sample.lua)", function()
  it("reports the program's and the machine's figures every interval while run_program runs it", function()
    local code, out, err, recs = run({
      { name = "run_program", params = { cmd = { "sh", "-c", "while :; do :; done" }, name = "burner" } },
      { name = "sample_process", interval_sec = 0.5, at_startup = false, params = { target = "burner" } },
    }, 2.2, { H.root .. "/events/sample.lua" })
    assert.equal(0, code, out)
    local by = {}
    for _, r in ipairs(recs) do
      if r.type == "result" and r.level == "metric" then
        by[r.data.metric] = by[r.data.metric] or {}
        table.insert(by[r.data.metric], r.data)
      end
    end
    local samples = #U.invocations(recs, "sample_process")
    assert.equal(4, samples)
    for _, m in ipairs({ "process.cpu_percent", "process.rss_bytes", "process.threads", "process.fds",
                         "system.cpu_percent", "system.mem_total_bytes", "system.mem_available_bytes", "system.load1" }) do
      assert.equal(samples, by[m] and #by[m] or 0, m)
    end
    local started = U.results(recs)[1]
    assert.equal("program started", started.message)
    for i, m in ipairs(by["process.cpu_percent"]) do
      assert.equal("burner", m.fields.target)
      assert.equal(started.pid, m.fields.pid)
      assert.equal("sh", m.fields.name)
      -- a busy loop's share of a loaded machine may be anything but none
      if i > 1 then assert.is_true(m.value > 0 and m.value <= 105, "cpu " .. m.value) end
    end
    for _, m in ipairs(by["process.threads"]) do assert.equal(1, m.value) end
    for _, m in ipairs(by["process.rss_bytes"]) do assert.is_true(m.value > 0) end
    for _, m in ipairs(by["system.cpu_percent"]) do assert.is_true(m.value >= 0 and m.value <= 100.5) end
    local ended
    for _, d in ipairs(U.results(recs)) do if d.message == "program ended" then ended = d end end
    assert.same({ name = "burner", pid = started.pid, signal = 15, stdout_lines = 0, message = "program ended" }, ended)
    assert.same({}, U.wait_groups_gone({ started.pid }, 1000))
    assert.same({ handles = 0, tasks = 0, refs = 0 }, U.stats(err))
  end)
end)
