if(INVAR_SANITIZE OR INVAR_FUZZ)  # the fuzz targets run under both (cmake/fuzz.cmake)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
