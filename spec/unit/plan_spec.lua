local plan = require "orch.plan"

describe("orch.plan", function()
  describe("last_k", function()
    it("stops before the end: no firing at or after it", function()
      assert.equal(35, plan.last_k(300, 3 * 3600))
      assert.equal(2, plan.last_k(3, 9))
      assert.equal(3, plan.last_k(3, 10))
    end)

    it("treats floating-point products as a person would", function()
      assert.equal(11, plan.last_k(0.3, 3.6))   -- 12 * 0.3 is 3.5999999999999996
      assert.equal(9, plan.last_k(0.1, 1))
      assert.equal(2, plan.last_k(1.5, 4.5))
      assert.equal(0, plan.last_k(10, 5))
    end)

    it("is exact over three days of one-second firings", function()
      assert.equal(259199, plan.last_k(1, 72 * 3600))
      assert.equal(259199, plan.last_k(1 / 3 * 3, 72 * 3600))
    end)
  end)

  describe("counts", function()
    it("adds startup, interval and teardown firings", function()
      assert.same({ startup = 1, interval = 35, teardown = 0, total = 36 },
        plan.counts({ interval = 300, at_startup = true, at_teardown = false }, 10800))
      assert.same({ startup = 0, interval = 0, teardown = 1, total = 1 },
        plan.counts({ at_startup = false, at_teardown = true }, 10800))
      assert.same({ startup = 0, interval = 2, teardown = 1, total = 3 },
        plan.counts({ interval = 3, at_startup = false, at_teardown = true }, 9))
    end)
  end)

  describe("timeline", function()
    it("merges the events' firings in time order", function()
      local a = { id = "a", interval = 2, at_startup = true }
      local b = { id = "b", interval = 3, at_startup = false }
      local tl = plan.timeline({ a, b }, 7, 100)
      local got = {}
      for _, f in ipairs(tl) do got[#got + 1] = f.event.id .. "@" .. f.t end
      -- ties go in description order
      assert.same({ "a@0", "a@2", "b@3", "a@4", "a@6", "b@6" }, got)
    end)
  end)

  describe("each_firing", function()
    it("walks every firing in time order, ties in description order, until told to stop", function()
      local a = { id = "a", interval = 2, at_startup = true }
      local b = { id = "b", interval = 3, at_startup = false }
      local c = { id = "c", at_startup = true }
      local d = { id = "d", at_startup = false }
      local got = {}
      plan.each_firing({ a, b, c, d }, 7, function(t, ev, k, phase)
        got[#got + 1] = ("%s@%g#%d %s"):format(ev.id, t, k, phase)
      end)
      assert.same({ "a@0#0 startup", "c@0#0 startup", "a@2#1 interval", "b@3#1 interval", "a@4#2 interval",
                    "a@6#3 interval", "b@6#2 interval" }, got)
      local n = 0
      plan.each_firing({ a, b }, 3600, function() n = n + 1; return n < 5 end)
      assert.equal(5, n)
    end)
  end)

  describe("clock", function()
    it("formats description seconds as h:mm:ss.mmm", function()
      assert.equal("0:05:00.000", plan.clock(300))
      assert.equal("72:00:00.500", plan.clock(72 * 3600 + 0.5))
    end)
  end)
end)
