with

source as (

    select * from {{ source('lake', 'closed_hours') }}

),

renamed as (

    select
        cast(replace(hour_start, 'Z', '') as timestamp) as hour_start,
        cast(rows as {{ dbt.type_bigint() }}) as event_count,
        cast(json_array_length(files) as {{ dbt.type_int() }}) as file_count,
        cast(version as {{ dbt.type_int() }}) as manifest_version,
        cast(closed_at as timestamptz) as closed_at,
        cast(updated_at as timestamptz) as updated_at,
        cast(watermark as timestamptz) as watermark_at

    from source

)

select * from renamed
