local suggest = require "orch.suggest"

describe("orch.suggest", function()
  describe("distance", function()
    it("counts insertions, deletions and substitutions", function()
      assert.equal(0, suggest.distance("abc", "abc"))
      assert.equal(1, suggest.distance("interval_secs", "interval_sec"))
      assert.equal(1, suggest.distance("at_statup", "at_startup"))
      assert.equal(1, suggest.distance("concurrancy", "concurrency"))
      assert.equal(3, suggest.distance("", "abc"))
      assert.equal(3, suggest.distance("abc", ""))
    end)

    it("counts a swap of two neighbours as one edit", function()
      assert.equal(1, suggest.distance("interval_sce", "interval_sec"))
      assert.equal(1, suggest.distance("ab", "ba"))
    end)
  end)

  describe("closest", function()
    local keys = { "name", "interval_sec", "interval_min", "interval_hour", "at_startup",
      "at_teardown", "params", "timeout_sec", "concurrency", "id" }

    it("finds the key a typo was meant to be", function()
      assert.equal("interval_sec", suggest.closest("interval_secs", keys))
      assert.equal("at_startup", suggest.closest("at_statup", keys))
      assert.equal("timeout_sec", suggest.closest("timeout_secs", keys))
      assert.equal("concurrency", suggest.closest("concurency", keys))
    end)

    it("accepts a set as well as a list", function()
      assert.equal("video_player", suggest.closest("video_playr", { video_player = true, kill_switch = true }))
    end)

    it("matches a name that differs only in case", function()
      assert.equal("params", suggest.closest("Params", keys))
      assert.equal("my_orchestration_test", suggest.closest("MY_ORCHESTRATION_TEST", { "my_orchestration_test" }))
    end)

    it("allows one edit in a short word", function()
      assert.equal("id", suggest.closest("ix", keys))
      assert.equal("run", suggest.closest("rn", { "run", "list" }))
    end)

    it("allows up to a third of the word's length in edits", function()
      -- "intervl_sc" is 10 bytes: 3 edits allowed, it is 2 away
      assert.equal("interval_sec", suggest.closest("intervl_sc", keys))
      -- "xxxxxx_sec" is 10 bytes but 6 away from everything
      assert.is_nil(suggest.closest("xxxxxx_sec", keys))
    end)

    it("suggests nothing when nothing is close", function()
      assert.is_nil(suggest.closest("frobnicate", keys))
      assert.is_nil(suggest.closest("x", {}))
      assert.is_nil(suggest.closest("ab", { "xy" }))
    end)

    it("breaks a tie the same way every time: fewer case slips, then alphabetical", function()
      assert.equal("ab", suggest.closest("ac", { "bc", "ab" }))
      assert.equal("ab", suggest.closest("ac", { ab = true, bc = true }))
      assert.equal("Ab", suggest.closest("Ax", { "ab", "Ab" }))
    end)

    it("prefers an exact match", function()
      assert.equal("interval_min", suggest.closest("interval_min", keys))
    end)
  end)

  describe("hint", function()
    it("phrases the suggestion for the end of a message", function()
      assert.equal(' (did you mean "interval_sec"?)', suggest.hint("interval_secs", { "interval_sec" }))
    end)

    it("is empty when there is nothing to suggest", function()
      assert.equal("", suggest.hint("frobnicate", { "interval_sec" }))
    end)
  end)
end)
