local Stats = require "orch.stats"

describe("orch.stats", function()
  it("gives exact nearest-rank percentiles while small", function()
    local s = Stats.new()
    for i = 1, 60 do s:add(i) end
    assert.equal(30, s:percentile(50))
    assert.equal(60, s:percentile(99))
    assert.equal(60, s.max)
    assert.equal(30.5, s:mean())
  end)

  it("stays within 1% with bounded memory over a million values", function()
    local s = Stats.new()
    for i = 1, 1000000 do s:add(i / 1000) end
    assert.equal(1000000, s.n)
    assert.equal(1000, s.max)
    local p50, p99 = s:percentile(50), s:percentile(99)
    assert.is_true(math.abs(p50 - 500) / 500 < 0.01, p50)
    assert.is_true(math.abs(p99 - 990) / 990 < 0.01, p99)
    local nb = 0
    for _ in pairs(s.buckets) do nb = nb + 1 end
    assert.is_true(nb < 2000, nb)
  end)

  it("returns nil when empty", function()
    assert.is_nil(Stats.new():percentile(50))
  end)
end)
