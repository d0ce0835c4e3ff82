-- events/playback.lua: the seed's example events, with stand-ins for the
-- video player, the streamer and the device.  The stand-ins are small
-- local processes (sh loops) started with orch.spawn, so a rehearsal of the
-- seed's run drives real processes; they wait only through orch's yielding
-- helpers, so a run of hundreds of them shares one loop, and orchlua
-- terminates whatever is left of them when the run ends.
local orch = require "orch"

local M = {}

-- The stand-in decoder: prints "frames 25" for every second it plays.
-- $1 is the clip, passed as an argument (never pasted into the script).
local DECODER = [[
echo "opening $1"
while :; do echo "frames 25"; sleep 1; done
]]

-- The stand-in streamer: answers each line on its stdin with its current
-- bitrate, and stops at EOF.
local STREAMER = [[
n=1
echo "kbps $((4000 + n % 7 * 100))"
while read -r _; do
  n=$((n + 1))
  echo "kbps $((4000 + n % 7 * 100))"
done
]]

-- A stand-in player: "plays" a clip for a while in a decoder process,
-- counting the frames it reports, and stops early when the kill switch is
-- set.
local Player = {}
Player.__index = Player

function Player.new() return setmetatable({ plays = 0, closed = false }, Player) end

function Player:play(video_path, kill_switch, result_reporter)
  assert(not self.closed, "player used after close")
  self.plays = self.plays + 1
  local frames = 0
  local decoder = orch.spawn{
    cmd = { "sh", "-c", DECODER, "orchlua-stand-in-player", video_path },
    on_stdout = function(line)
      local n = line:match("^frames (%d+)$")
      if n then frames = frames + tonumber(n) end
    end,
  }
  self.decoder = decoder
  local stopped = kill_switch:wait(30)      -- 30 s of playback
  decoder:terminate()
  decoder:wait()
  self.decoder = nil
  result_reporter:add_result({ video = video_path, play = self.plays, frames = frames,
                               stopped_by_kill_switch = stopped, pid = decoder.pid })
end

function Player:close()
  self.closed = true
  if self.decoder then self.decoder:terminate() end
end

orch.fixture("video_player", function()
  local player = Player.new()
  return player, function() player:close() end
end)

-- The seed's unreferenced setup fixture: a device with collectd running
-- (a stand-in daemon that lives for the whole run: owned by the run, not by
-- the invocation that happened to set it up).
orch.fixture("device_with_collectd", function(result_reporter)
  local collectd = orch.spawn{
    cmd = { "sh", "-c", "while :; do sleep 3600; done", "orchlua-stand-in-collectd" },
    owner = "run",
  }
  result_reporter:info("collectd started on the device", { pid = collectd.pid })
  return { name = "device-1", collectd = collectd }, function()
    collectd:terminate()
    local code, sig = collectd:wait()
    result_reporter:info("collectd stopped on the device", { code = code, signal = sig })
  end
end)

function M.start_playback(video_player, video_path, kill_switch, result_reporter)
  video_player:play(video_path, kill_switch, result_reporter)
end

-- Streams until the kill switch is set, reporting a metric every minute:
-- the bitrate the streamer process last reported, asking it for the next.
function M.start_streamer(kill_switch, result_reporter)
  local kbps = nil
  local streamer = orch.spawn{
    cmd = { "sh", "-c", STREAMER, "orchlua-stand-in-streamer" },
    stdin = true,
    on_stdout = function(line) kbps = tonumber(line:match("^kbps (%d+)$")) or kbps end,
  }
  local n = 0
  while not kill_switch:wait(60) do
    n = n + 1
    result_reporter:metric("stream_kbps", kbps or 0)
    streamer:write("next\n")
  end
  streamer:close_stdin()                    -- EOF: the streamer stops by itself
  local code, sig = streamer:wait(5)
  if code == nil and sig == "timeout" then
    streamer:terminate()
    code, sig = streamer:wait()
  end
  result_reporter:info("streamer stopped", { minutes = n, code = code, signal = sig, pid = streamer.pid })
end

function M.collect_system_report(result_reporter, description)
  local sys = orch.sys
  local mem = sys.memory()
  local load1 = sys.loadavg()
  result_reporter:add_result({ report = "system", test = description.test_name, uptime = orch.now(),
                               load1 = load1, mem_available = mem and mem.available })
end

return M
