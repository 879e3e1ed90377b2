-- Why a history line has its result when the result alone does not say (`deleted` by retention,
-- by an operator, or found missing on disk by reconcile).
ALTER TABLE backups ADD COLUMN note TEXT;
