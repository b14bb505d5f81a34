-- wrk script: a different tenant on every request (tenant-0 … tenant-99999), either appended to
-- the URL (decision API: …?tenant=tenant-) or sent as X-Tenant-ID (set TENANT_HEADER=1).
local n = 0
local header = os.getenv("TENANT_HEADER") == "1"
request = function()
  n = (n + 7919) % 100000
  local tenant = "tenant-" .. n
  if header then
    wrk.headers["X-Tenant-ID"] = tenant
    return wrk.format(nil, wrk.path)
  end
  return wrk.format(nil, wrk.path .. tenant)
end
