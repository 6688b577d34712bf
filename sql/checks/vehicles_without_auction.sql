-- check: vehicles_without_auction
-- severity: warning
-- requires: vehicles, auctions
-- description: Vehicles whose auction_id names an auction that does not exist (a NULL auction_id is fine); a warning, not critical, because the vehicle rows are intact and only their link to an auction is broken.
--
-- The DealerScope runbook's referential-integrity check (verification queries and the
-- PITR recovery's verification phase).  After a restore, many such rows usually mean the
-- auctions lost in the recovery window: compare with the restore's integrity report.
-- A foreign key from vehicles.auction_id to auctions.id makes this impossible for good.
SELECT v.id AS vehicle_id,
       v.auction_id
FROM vehicles AS v
WHERE v.auction_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM auctions AS a WHERE a.id = v.auction_id)
ORDER BY v.id
