"""S3: one bucket under one prefix for one database; uploads with their checksums, and the verified copy to the DR bucket."""
