-- bench/events/trivial.lua: the trivial event body of workloads 1 and 5.
local M = {}

function M.trivial() end

return M
