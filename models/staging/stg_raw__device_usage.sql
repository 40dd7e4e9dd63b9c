with

source as (

    select * from {{ source('raw', 'device_usage') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as device_id,
        cast(antenna_id as {{ dbt.type_string() }}) as antenna_id,
        cast(app as {{ dbt.type_string() }}) as app,
        cast(bytes as {{ dbt.type_bigint() }}) as bytes,
        event_time as event_at,
        {{ epoch_seconds('event_time') }} as event_epoch,
        kafka_topic,
        cast(kafka_partition as {{ dbt.type_int() }}) as kafka_partition,
        cast(kafka_offset as {{ dbt.type_bigint() }}) as kafka_offset,
        ingested_at,
        {{ staged_ingest_seq('source') }} as ingest_seq

    from source

)

select * from renamed
