-- Unit specs of the checks' validation (orch.schema, orch.description),
-- without the host.
local description = require "orch.description"
local schema = require "orch.schema"

local function decode(checks, events)
  return description.decode(([[{ "test_name": "t", "total_hours": 1,
  "events": %s, "checks": %s }]]):format(events or '[ { "name": "tick", "interval_sec": 10 } ]', checks))
end

local function messages(errs)
  local out = {}
  for i, e in ipairs(errs) do out[i] = description.format_error(e) end
  return out
end

describe("orch.schema", function()
  describe("percentile", function()
    it("reads pNN with 0 < NN < 100, decimals allowed", function()
      assert.equal(99, schema.percentile("p99"))
      assert.equal(99.9, schema.percentile("p99.9"))
      assert.equal(0.5, schema.percentile("p0.5"))
      assert.is_nil(schema.percentile("p0"))
      assert.is_nil(schema.percentile("p100"))
      assert.is_nil(schema.percentile("p"))
      assert.is_nil(schema.percentile("99"))
    end)
  end)
end)

describe("orch.description checks", function()
  it("normalizes a check: its source kind, percentile, default name and defaults", function()
    local desc = assert(decode('[ { "event": "tick", "series": "duration", "stat": "p99.9", "max": 2, "window_sec": 60 } ]'))
    local c = desc.checks[1]
    assert.same({ "duration", 99.9, "tick.duration p99.9/60s", "fail", false, 0, 60 },
      { c.kind, c.p, c.name, c.action, c.allow_no_data, c.after, c.window })
  end)

  it("takes an event without series as its failures", function()
    local desc = assert(decode('[ { "event": "tick", "stat": "error_rate", "max": 0.1 } ]'))
    assert.equal("status", desc.checks[1].kind)
  end)

  it("refuses a limit that is not a finite number", function()
    local _, errs = decode('[ { "metric": "m", "stat": "max", "max": 1e400 } ]')
    assert.same({ '2:108: checks[0].max: expected a number, found 1e400' }, messages(errs))
  end)

  it("refuses a stat that does not suit its source", function()
    local _, errs = decode('[ { "event": "tick", "series": "invocations", "stat": "mean", "max": 1 } ]')
    assert.same({ '2:113: checks[0].stat: stat "mean" needs a "metric", or an "event" with "series": '
      .. '"duration" or "lateness", found an "event" with "series": "invocations"' }, messages(errs))
  end)

  it("refuses two checks with the same name", function()
    local _, errs = decode('[ { "metric": "m", "stat": "max", "max": 1 }, { "metric": "m", "stat": "max", "max": 2 } ]')
    assert.same({ '2:113: checks[1]: duplicate check name "m max", also used by checks[0]; '
      .. 'give one of them a distinct "name"' }, messages(errs))
  end)
end)
