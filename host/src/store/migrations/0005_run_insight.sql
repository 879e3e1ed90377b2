-- What a run learnt about itself while it ran, for `GET /api/runs/{id}`: the preflight's figures
-- (estimate, free space, ETA) and the warnings its steps gave (JSON object).
ALTER TABLE runs ADD COLUMN insight_json TEXT;
