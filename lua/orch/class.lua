-- orch.class: the smallest class helper that supports Base:extend() and
-- Sub.new(...) as DESIGN.md shows for ResultReporter.
local M = {}

function M.class(base)
  local cls = {}
  cls.__index = cls
  if base then setmetatable(cls, { __index = base }) end
  cls.super = base
  function cls.new(...)
    local self = setmetatable({}, cls)
    if self.init then self:init(...) end
    return self
  end
  function cls:extend() return M.class(self) end
  return cls
end

return M
