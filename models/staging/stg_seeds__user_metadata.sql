with

source as (

    select * from {{ ref('user_metadata') }}

),

renamed as (

    select
        lower(cast(id as {{ dbt.type_string() }})) as user_id,
        cast(name as {{ dbt.type_string() }}) as user_name,
        cast(email as {{ dbt.type_string() }}) as email,
        cast(quota as {{ dbt.type_bigint() }}) as quota_bytes_per_hour

    from source

)

select * from renamed
