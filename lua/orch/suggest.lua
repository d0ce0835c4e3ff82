-- orch.suggest: "did you mean" for misspelt names (description keys, event
-- and fixture names, description names, command names).

local suggest = {}

-- Optimal string alignment distance (Levenshtein plus transposition of two
-- adjacent bytes): "interval_sce" is one slip away from "interval_sec", not two.
-- Two rolling rows plus the one before them keep memory at O(#b).
local function distance(a, b)
  local la, lb = #a, #b
  if la == 0 then return lb end
  if lb == 0 then return la end
  local prev2, prev, cur = {}, {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    local ca = a:byte(i)
    for j = 1, lb do
      local cb = b:byte(j)
      local cost = ca == cb and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev, cur = prev, cur, prev2
  end
  return prev[lb]
end
suggest.distance = distance

-- Candidates come as a list {"a", "b"} or a set {a = true}; either way we want
-- them sorted, so that a tie always picks the same name.
local function names_of(candidates)
  local names = {}
  if candidates[1] ~= nil then
    for _, name in ipairs(candidates) do names[#names + 1] = name end
  else
    for name in pairs(candidates) do
      if type(name) == "string" then names[#names + 1] = name end
    end
  end
  table.sort(names)
  return names
end

--- The candidate closest to `word`, or nil when none is close enough to be
-- worth suggesting: within max(1, #word // 3) edits, case ignored (so a
-- case-only difference always qualifies). Ties go to the fewer case slips,
-- then to the alphabetically first name.
function suggest.closest(word, candidates)
  if type(word) ~= "string" or candidates == nil then return nil end
  local limit = math.max(1, #word // 3)
  local lower = word:lower()
  local best, best_d, best_exact
  for _, name in ipairs(names_of(candidates)) do
    local d = distance(lower, name:lower())
    if d <= limit then
      local exact = distance(word, name)
      if not best or d < best_d or (d == best_d and exact < best_exact) then
        best, best_d, best_exact = name, d, exact
      end
    end
  end
  return best
end

--- ' (did you mean "X"?)' for the closest candidate, or "" when none is close.
function suggest.hint(word, candidates)
  local name = suggest.closest(word, candidates)
  if not name then return "" end
  return (' (did you mean "%s"?)'):format(name)
end

return suggest
