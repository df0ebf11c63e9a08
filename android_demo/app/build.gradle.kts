import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "dev.edgecompress.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "dev.edgecompress.demo"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
    }

    // .tflite files are memory-mapped from the APK: keep them uncompressed.
    androidResources {
        noCompress += "tflite"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    testOptions {
        unitTests.all {
            // The shared vectors the Python tests check too.
            it.systemProperty("edgecompress.vectors", rootProject.file("../tests/vectors/numerics.json").absolutePath)
        }
    }
}

// compilerOptions, not the kotlinOptions DSL (deprecated with error in Kotlin Gradle Plugin 2.x).
kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    // TFLite's Java API from Maven Central. LiteRT 1.x (com.google.ai.edge.litert:litert,
    // from Google's Maven) has the same org.tensorflow.lite API and drops in.
    implementation(libs.tflite)
    implementation(libs.tflite.gpu)
    testImplementation(libs.junit)
    testImplementation(libs.json) // android.jar's org.json is a stub in local unit tests
}
