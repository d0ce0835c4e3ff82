-- `make install` and `make uninstall` with PREFIX and DESTDIR: the binary,
-- the man pages, orch.h and the examples go where a packager expects them,
-- the installed orchlua runs its examples and shows its manual, and
-- uninstall removes exactly what install put.
local h = require "helper"

local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  return rc, out:gsub("rc=%d+\n$", "")
end

local function files_under(dir)
  local _, out = sh("cd " .. h.q(dir) .. " && find . -type f | sort")
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line:sub(3) end
  return list
end

describe("make install", function()
  local dest
  after_each(function() h.rm(dest) end)

  it("installs under DESTDIR/PREFIX, and uninstall removes exactly that", function()
    dest = h.tmpdir()
    local make = "make -s -C " .. h.q(h.root) .. " DESTDIR=" .. h.q(dest) .. " PREFIX=/opt/orch "
    local rc, out = sh(make .. "install")
    assert.equal(0, rc, out)
    local want = {
      "opt/orch/bin/orchlua",
      "opt/orch/include/orch.h",
      "opt/orch/share/man/man1/orchlua.1",
      "opt/orch/share/man/man3/orch.3",
      "opt/orch/share/man/man5/orchlua-description.5",
      "opt/orch/share/orchlua/.orchlua",
    }
    for _, dir in ipairs({ "events", "descriptions" }) do
      local _, listed = sh("cd " .. h.q(h.root) .. " && ls " .. dir .. (dir == "events" and "/*.lua events/*.so"
        or "/*.json"))
      for f in listed:gmatch("[^\n]+") do want[#want + 1] = "opt/orch/share/orchlua/" .. f end
    end
    table.sort(want)
    assert.same(want, files_under(dest))
    for _, page in ipairs({ "man1/orchlua.1", "man3/orch.3", "man5/orchlua-description.5" }) do
      assert.equal(h.read(h.root .. "/man/" .. page:match("/(.*)")), h.read(dest .. "/opt/orch/share/man/" .. page))
    end
    local _, mode = sh("stat -c %a " .. h.q(dest .. "/opt/orch/bin/orchlua"))
    assert.equal("755\n", mode)
    -- where man(1) finds them
    for sec, name in pairs({ ["1"] = "orchlua", ["5"] = "orchlua-description", ["3"] = "orch" }) do
      local _, page = sh("man -M " .. h.q(dest .. "/opt/orch/share/man") .. " " .. sec .. " " .. name)
      assert.matches("^" .. name:upper():gsub("%-", "%%-") .. "%(" .. sec .. "%)", page)
    end

    -- the installed binary on its own: its manual, and the examples it came with
    local bin = dest .. "/opt/orch/bin/orchlua"
    rc, out = sh(h.q(bin) .. " help description")
    assert.equal(0, rc, out)
    assert.matches("^ORCHLUA%-DESCRIPTION%(5%)", out)
    assert.matches("\n       timeout_sec %(number > 0, default: none%)\n", out)
    rc, out = sh("cd " .. h.q(dest .. "/opt/orch/share/orchlua") .. " && " .. h.q(bin) .. " check")
    assert.equal(0, rc, out)
    assert.matches("ok  demo ", out)

    rc, out = sh(make .. "uninstall")
    assert.equal(0, rc, out)
    assert.same({}, files_under(dest))
    -- orchlua's own folder goes; the shared ones stay
    assert.is_nil(io.open(dest .. "/opt/orch/share/orchlua", "r"))
    assert.truthy(io.open(dest .. "/opt/orch/share/man/man1", "r"))
  end)
end)
