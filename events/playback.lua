-- events/playback.lua: the seed's example events, with stand-ins for the
-- video player, the streamer and the device.  They wait only through
-- orch's yielding helpers, so a run of hundreds of them shares one loop.
local orch = require "orch"

local M = {}

-- A stand-in player: "plays" a clip for a while, reporting frames, and
-- stops early when the kill switch is set.
local Player = {}
Player.__index = Player

function Player.new() return setmetatable({ plays = 0, closed = false }, Player) end

function Player:play(video_path, kill_switch, result_reporter)
  assert(not self.closed, "player used after close")
  self.plays = self.plays + 1
  local stopped = kill_switch:wait(30)      -- 30 s of "playback"
  result_reporter:add_result({ video = video_path, play = self.plays, frames = 30 * 25,
                               stopped_by_kill_switch = stopped })
end

function Player:close() self.closed = true end

orch.fixture("video_player", function()
  local player = Player.new()
  return player, function() player:close() end
end)

-- The seed's unreferenced setup fixture: a device with collectd running.
orch.fixture("device_with_collectd", function(result_reporter)
  result_reporter:info("collectd started on the device")
  return { name = "device-1" }, function()
    result_reporter:info("collectd stopped on the device")
  end
end)

function M.start_playback(video_player, video_path, kill_switch, result_reporter)
  video_player:play(video_path, kill_switch, result_reporter)
end

-- Streams until the kill switch is set, reporting a metric every minute.
function M.start_streamer(kill_switch, result_reporter)
  local n = 0
  while not kill_switch:wait(60) do
    n = n + 1
    result_reporter:metric("stream_kbps", 4000 + (n % 7) * 100)
  end
  result_reporter:info("streamer stopped", { minutes = n })
end

function M.collect_system_report(result_reporter, description)
  result_reporter:add_result({ report = "system", test = description.test_name, uptime = orch.now() })
end

return M
