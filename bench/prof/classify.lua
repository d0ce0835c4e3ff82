-- bench/prof/classify.lua: reads `callgrind_annotate --auto=no` (exclusive
-- costs per function) on stdin and sums them into buckets: Lua VM and
-- tables, libc formatting, malloc, cjson, GC, orchlua's C, libuv, ...
-- Usage: callgrind_annotate --auto=no --threshold=100 OUT | lua5.4 classify.lua UNITS
-- (UNITS: invocations or results, to print Ir per unit).
local total = 0
local buckets = {}
local N = tonumber(arg[1]) or 1
for line in io.lines() do
  local ir, file, fn = line:match("^%s*([%d,]+) %(%s*[%d%.]+%%%)%s+(.-):(%S+)")
  if ir and fn then
    ir = tonumber((ir:gsub(",", "")))
    local b
    if fn:match("^json_") or fn:match("^strbuf") or fn:match("^fpconv") then b = "cjson (incl. its calls into Lua API)"
    elseif fn:match("printf") or fn:match("hack_digit") or fn:match("mpn_") or fn:match("^_IO") or fn:match("strchrnul") or fn:match("^__str") or fn:match("^str[a-z]*$") and not fn:match("^str_") or fn:match("__mpn") or fn:match("_i18n") or fn:match("^__memcpy") or fn:match("^__mem") or fn:match("^memcpy") or fn:match("^__GI_") then b = "libc printf/string/memcpy"
    elseif fn:match("malloc") or fn:match("free") and not fn:match("^lua") and not fn:match("freeobj") or fn:match("^_int_") or fn:match("realloc") or fn:match("unlink_chunk") or fn:match("consolidate") or fn:match("^tcache") or fn:match("l_alloc") or fn:match("^luaM_") then b = "malloc/free (incl. l_alloc, luaM_)"
    elseif fn:match("^luaC_") or fn:match("propagate") or fn:match("sweep") or fn:match("freeobj") or fn:match("singlestep") or fn:match("^reallymark") or fn:match("^traverse") or fn:match("^mark") or fn:match("atomic") or fn:match("^clear") or fn:match("^luaE_free") or fn:match("^luaS_remove") or fn:match("^luaF_free") or fn:match("^luaH_free") or fn:match("^remarkupvals") or fn:match("^convergeephemerons") or fn:match("^separatetobefnz") or fn:match("^callallpending") or fn:match("^GCTM") or fn:match("^udata2finalize") or fn:match("^entersweep") or fn:match("^checkSizes") or fn:match("^luaD_shrinkstack") or fn:match("^luaE_shrinkCI") or fn:match("^setpause") then b = "Lua GC"
    elseif file:match("/work/main/src/") or file:match("src/") then b = "orchlua C (src/)"
    elseif fn:match("^uv") or fn:match("^heap_") or fn:match("^timer_") then b = "libuv"
    elseif fn:match("gmtime") or fn:match("clock_gettime") or fn:match("__offtime") or fn:match("tz") or fn:match("vdso") then b = "time (gmtime_r, clock_gettime)"
    elseif fn:match("^str_") or fn:match("^luaL_") or fn:match("^luaB_") or fn:match("^math_") or fn:match("^tconcat") or fn:match("^addfield") or fn:match("^l_str") or fn:match("^pack") or fn:match("^tunpack") or fn:match("^ipairs") or fn:match("^db_") or fn:match("^auxgetinfo") then b = "Lua stdlib (string.format, pcall, ...)"
    elseif fn:match("^lua") or fn:match("^index2") or fn:match("^mainposition") or fn:match("^getgeneric") or fn:match("^resume") or fn:match("^internshrstr") or fn:match("^ccall") or fn:match("^precall") or fn:match("^moveresults") or fn:match("^l_strcmp") or fn:match("^getfield") or fn:match("^aux_") or fn:match("^auxsetstr") or fn:match("^unbound_search") or fn:match("^hash_search") or fn:match("^rehash") or fn:match("^numusehash") or fn:match("^setnodevector") or fn:match("^insert_") or fn:match("^reinsert") or fn:match("^countint") or fn:match("^numusearray") or fn:match("^computesizes") or fn:match("^f_call") or fn:match("^luai_") or fn:match("^tryfuncTM") or fn:match("^createstrobj") or fn:match("^growstrtab") or fn:match("^stack_init") or fn:match("^preinit") or fn:match("^lua_newstate") or fn:match("^exchangehashpart") or fn:match("^alimitequal") or fn:match("^luaH") or fn:match("^auxupvalue") or fn:match("^findfield") or fn:match("^finishCcall") or fn:match("^unroll") or fn:match("^getfreepos") then b = "Lua VM/API/tables"
    else b = "other: " .. fn end
    buckets[b] = (buckets[b] or 0) + ir
    total = total + ir
  end
end
local keys = {}
for k in pairs(buckets) do keys[#keys + 1] = k end
table.sort(keys, function(a, b) return buckets[a] > buckets[b] end)
local other = 0
for _, k in ipairs(keys) do
  if k:match("^other") and buckets[k] / total < 0.01 then other = other + buckets[k]
  else
    print(("%-45s %12d Ir %5.1f%%  %8.0f Ir/unit"):format(k, buckets[k], buckets[k] / total * 100, buckets[k] / N))
  end
end
print(("%-45s %12d Ir %5.1f%%  %8.0f Ir/unit"):format("other (each <1%)", other, other / total * 100, other / N))
print(("%-45s %12d Ir %5.1f%%  %8.0f Ir/unit"):format("total", total, 100, total / N))
