-- What a registered template boots: a disk image (format QCOW2 or RAW) or a kernel with an
-- initial RAM disk and a command line, as paths on the hosts. The built-in template has none.
ALTER TABLE templates ADD COLUMN image_path TEXT;
ALTER TABLE templates ADD COLUMN format TEXT;
ALTER TABLE templates ADD COLUMN initrd TEXT;
ALTER TABLE templates ADD COLUMN cmdline TEXT;
