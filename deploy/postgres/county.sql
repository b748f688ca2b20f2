-- The county profile's databases (docker-compose.yml): the county database "county" is made by the image
-- (POSTGRES_DB); one database per township served. Run once, at the first start of an empty volume.
CREATE DATABASE ershili OWNER dispatcher;
